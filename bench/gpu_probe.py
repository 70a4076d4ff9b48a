"""A GPU probe, run on an H200 on 2026-12-04 (output: bench/results/gpu-logs/autocast-losses-2026-12-04.log): the
public losses inside CUDA autocast on bf16 features, forward and backward; tests/test_losses.py checks the same on
the CPU. The log's last line came from a second part, RN50's CLIP step on one batch kept on the GPU, which now lives
in bench/gpu_check.py (``_resident_batch_rate``) and was removed here.

    PYTHONPATH=src python bench/gpu_probe.py
"""
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
