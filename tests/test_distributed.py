"""2-process gloo runs with local batch B against 1-process runs with batch 2B."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cloob.distributed import gather_features
from cloob.losses import method_loss

B, D_IN, D = 6, 5, 4
METHODS = ["clip", "infoloob", "infonce-hopfield", "cloob", "siglip", "siglip-hopfield"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_problem(batch_sizes=(B, B)):
    g = torch.Generator().manual_seed(0)
    n = sum(batch_sizes)
    images = torch.randn(n, D_IN, generator=g, dtype=torch.float64)
    texts = torch.randn(n, D_IN, generator=g, dtype=torch.float64)
    w_img = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    w_txt = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    return images, texts, w_img, w_txt


def step(images, texts, w_img, w_txt, method, inv_tau=torch.tensor(10.0, dtype=torch.float64)):
    """A linear 'encoder' per tower, then the loss; returns loss and grads."""
    w_img = w_img.clone().requires_grad_()
    w_txt = w_txt.clone().requires_grad_()
    t = inv_tau.clone().requires_grad_()
    beta = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)  # the sigmoid methods' logit bias
    x = F.normalize(images @ w_img, dim=-1)
    y = F.normalize(texts @ w_txt, dim=-1)
    x.retain_grad()
    y.retain_grad()
    loss = method_loss(method, x, y, t, beta, logit_bias=bias if method.startswith("siglip") else None)
    loss.backward()
    # beta's and the bias's gradients, summed (zero where the method has none)
    gb = sum(p.grad for p in (beta, bias) if p.grad is not None) if (beta.grad is not None or bias.grad is not None) \
        else torch.zeros((), dtype=torch.float64)
    return loss.detach(), x.grad, y.grad, w_img.grad, w_txt.grad, t.grad, gb


def worker(rank, world, port, out_dir, batch_sizes):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        images, texts, w_img, w_txt = make_problem(batch_sizes)
        lo = sum(batch_sizes[:rank])
        hi = lo + batch_sizes[rank]
        results = {}
        for method in METHODS:
            loss, gx, gy, gwi, gwt, gt, gb = step(images[lo:hi], texts[lo:hi], w_img, w_txt, method)
            # parameters: sum the per-process contributions (what the trainer's all-reduce does)
            for g in (gwi, gwt, gt, gb):
                dist.all_reduce(g, op=dist.ReduceOp.SUM)
            results[method] = dict(loss=loss, gx=gx, gy=gy, gwi=gwi, gwt=gwt, gt=gt, gb=gb)
        # open_clip's SigLipLoss per process (local images against every process's texts): the mean over the
        # processes of its losses is the global loss that cloob's gathered siglip_loss gives on every process
        from open_clip.loss import SigLipLoss

        from cloob.losses import siglip_loss

        if len(set(batch_sizes)) == 1:  # open_clip's gather needs equal local batches
            x = F.normalize(images[lo:hi] @ w_img, dim=-1).float()
            y = F.normalize(texts[lo:hi] @ w_txt, dim=-1).float()
            t, b = torch.tensor(10.0), torch.tensor(-10.0)
            theirs = SigLipLoss(rank=rank, world_size=world, dist_impl="gather")(x, y, t, b).detach()
            dist.all_reduce(theirs, op=dist.ReduceOp.SUM)
            results["open_clip_siglip"] = (siglip_loss(x, y, t, b).detach(), theirs / world)
        # gather of a tensor that requires grad keeps only the local gradient path
        z = torch.full((batch_sizes[rank], 2), float(rank + 1), requires_grad=True)
        gather_features(z).sum().backward()
        results["gather_grad"] = z.grad
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("batch_sizes", [(B, B), (B, B - 2)], ids=["equal", "unequal"])
def test_two_gloo_processes_equal_one_process_with_the_doubled_batch(tmp_path, batch_sizes):
    mp.start_processes(worker, args=(2, free_port(), str(tmp_path), batch_sizes), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    images, texts, w_img, w_txt = make_problem(batch_sizes)
    for method in METHODS:
        loss, gx, gy, gwi, gwt, gt, gb = step(images, texts, w_img, w_txt, method)
        lo = 0
        for r, res in enumerate(ranks):
            hi = lo + batch_sizes[r]
            got = res[method]
            torch.testing.assert_close(got["loss"], loss, rtol=0, atol=1e-5)
            torch.testing.assert_close(got["gx"], gx[lo:hi], rtol=0, atol=1e-5)
            torch.testing.assert_close(got["gy"], gy[lo:hi], rtol=0, atol=1e-5)
            torch.testing.assert_close(got["gwi"], gwi, rtol=0, atol=1e-5)
            torch.testing.assert_close(got["gwt"], gwt, rtol=0, atol=1e-5)
            torch.testing.assert_close(got["gt"], gt, rtol=0, atol=1e-5)
            torch.testing.assert_close(got["gb"], gb, rtol=0, atol=1e-5)
            lo = hi
    for r, res in enumerate(ranks):
        torch.testing.assert_close(res["gather_grad"], torch.ones(batch_sizes[r], 2))
        if "open_clip_siglip" in res:
            ours, theirs = res["open_clip_siglip"]
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert batch_sizes[0] != batch_sizes[1] or all("open_clip_siglip" in res for res in ranks)


def test_gather_is_identity_without_a_process_group():
    x = torch.randn(3, 2)
    assert gather_features(x) is x
