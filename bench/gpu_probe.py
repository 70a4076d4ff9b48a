"""A GPU probe, run once on an H200 (2026-12-04; its output is bench/results/gpu-logs/autocast-losses-2026-12-04.log):
the public losses inside CUDA autocast on bf16 features (forward and backward), then RN50's CLIP step on one batch
kept on the GPU. bench/gpu_check.py now times the latter itself; tests/test_losses.py checks the former on the CPU.

    PYTHONPATH=src python bench/gpu_probe.py
"""
import time
import torch
import torch.nn.functional as F
from cloob.losses import clip_loss, cloob_loss, contrastive_loss, siglip_loss
g = torch.Generator(device="cuda").manual_seed(0)
for name, f in [("clip", lambda x, y: clip_loss(x, y, 10.0)), ("cloob", lambda x, y: cloob_loss(x, y, 10.0, 14.3)),
                ("siglip", lambda x, y: siglip_loss(x, y, torch.tensor(10.0, device="cuda"), torch.tensor(-10.0, device="cuda"))),
                ("infonce-hopfield", lambda x, y: contrastive_loss(x, y, 10.0, "infonce", 14.3))]:
    w = torch.randn(64, 32, device="cuda", generator=g, requires_grad=True)
    a = torch.randn(256, 64, device="cuda", generator=g); b = torch.randn(256, 64, device="cuda", generator=g)
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = f(F.normalize(a @ w, dim=-1), F.normalize(b @ w, dim=-1))
        loss.backward()
        with torch.no_grad():
            ref = f(F.normalize((a @ w).bfloat16().float(), dim=-1), F.normalize((b @ w).bfloat16().float(), dim=-1))
        print(f"{name}: autocast bf16 ok, loss {loss.dtype} {loss.item():.6f} (fp32 on the same bf16 features {ref.item():.6f}), "
              f"grad norm {w.grad.norm().item():.4f}", flush=True)
    except Exception as e:
        print(f"{name}: FAIL {type(e).__name__}: {str(e)[:160]}", flush=True)
from cloob.models import create_model
m, _, _ = create_model("RN50", device="cuda"); m.train()
x = torch.randn(256, 3, 224, 224, device="cuda"); tok = torch.randint(1, 49000, (256, 77), device="cuda"); tok[:, 20] = 49407
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        xi, yi = m.encode_image(x), m.encode_text(tok)
    loss = clip_loss(xi.float(), yi.float(), m.inv_tau)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for _ in range(5): step()
torch.cuda.synchronize(); t = time.time()
for _ in range(30): step()
torch.cuda.synchronize(); dt = (time.time() - t) / 30
print(f"RN50 CLIP step, resident batch of 256, bf16 autocast, no loader or logging: {256/dt:.0f} pairs/s ({dt*1000:.1f} ms/step)", flush=True)
