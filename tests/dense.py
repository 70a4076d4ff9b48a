"""Dense, literal implementations of method.md §1: full N×N matrices for the four
retrievals and both InfoLOOB terms. Fast for small N, O(N²) memory; the reference
for the memory-efficient losses (tests) and their benchmark (bench/bench_loss.py)."""
import torch
import torch.nn.functional as F


def dense_info_loob(a, s, inv_tau):
    logits = inv_tau * a @ s.T
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    positive = logits[eye]
    negatives = logits.masked_fill(eye, float("-inf"))
    return (torch.logsumexp(negatives, dim=1) - positive).mean()


def dense_retrieve(state, stored, beta):
    return torch.softmax(beta * state @ stored.T, dim=-1) @ stored


def dense_cloob_loss(x, y, inv_tau, beta):
    U_x = F.normalize(dense_retrieve(x, x, beta), dim=-1)
    U_y = F.normalize(dense_retrieve(y, x, beta), dim=-1)
    V_x = F.normalize(dense_retrieve(x, y, beta), dim=-1)
    V_y = F.normalize(dense_retrieve(y, y, beta), dim=-1)
    return (dense_info_loob(U_x, U_y, inv_tau) + dense_info_loob(V_y, V_x, inv_tau)) / inv_tau


def dense_clip_loss(x, y, inv_tau):
    logits = inv_tau * x @ y.T
    labels = torch.arange(x.shape[0], device=x.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
