"""Independent reference implementations: explicit Python loops over i and j,
written straight from the formulas of method.md §1 (slow; small N only)."""

import torch


def naive_norm(v):
    return v / torch.sqrt(sum(v[k] * v[k] for k in range(v.shape[0])))


def naive_dot(a, b):
    return sum(a[k] * b[k] for k in range(a.shape[0]))


def naive_info_nce(a, s, t):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        denom = sum(torch.exp(t * naive_dot(a[i], s[j])) for j in range(n))
        total = total - torch.log(torch.exp(t * naive_dot(a[i], s[i])) / denom)
    return total / n


def naive_info_loob(a, s, t):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        denom = sum(torch.exp(t * naive_dot(a[i], s[j])) for j in range(n) if j != i)
        total = total - (t * naive_dot(a[i], s[i]) - torch.log(denom))
    return total / n


def naive_retrieve(state, stored, beta):
    """softmax(beta * xi X^T) X, row by row."""
    rows = []
    for i in range(state.shape[0]):
        w = [torch.exp(beta * naive_dot(state[i], stored[j])) for j in range(stored.shape[0])]
        z = sum(w)
        rows.append(sum(w[j] / z * stored[j] for j in range(stored.shape[0])))
    return torch.stack(rows)


def naive_hopfield(x, y, beta):
    nrm = lambda m: torch.stack([naive_norm(r) for r in m])
    U_x = nrm(naive_retrieve(x, x, beta))
    U_y = nrm(naive_retrieve(y, x, beta))
    V_x = nrm(naive_retrieve(x, y, beta))
    V_y = nrm(naive_retrieve(y, y, beta))
    return U_x, U_y, V_x, V_y


def naive_clip(x, y, t):
    return 0.5 * (naive_info_nce(x, y, t) + naive_info_nce(y, x, t))


def naive_cloob(x, y, t, beta):
    U_x, U_y, V_x, V_y = naive_hopfield(x, y, beta)
    return (naive_info_loob(U_x, U_y, t) + naive_info_loob(V_y, V_x, t)) / t


def naive_cell(x, y, t, objective, beta):
    if beta is None:
        p1, p2 = (x, y), (y, x)
    else:
        U_x, U_y, V_x, V_y = naive_hopfield(x, y, beta)
        p1, p2 = (U_x, U_y), (V_y, V_x)
    if objective == "infonce":
        return 0.5 * (naive_info_nce(*p1, t) + naive_info_nce(*p2, t))
    return (naive_info_loob(*p1, t) + naive_info_loob(*p2, t)) / t




def naive_sigmoid(a, s, t, b):
    """SigLIP: −(1/N) Σ_i Σ_j log σ(z_ij (t a_i·s_j + b)), z = 1 on the diagonal, −1 off it."""
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total = total - torch.log(1.0 / (1.0 + torch.exp(-z * (t * naive_dot(a[i], s[j]) + b))))
    return total / n


def naive_siglip_hopfield(x, y, t, b, beta):
    """The sigmoid loss on the retrievals, both pairs as infonce-hopfield uses them, averaged."""
    U_x, U_y, V_x, V_y = naive_hopfield(x, y, beta)
    return 0.5 * (naive_sigmoid(U_x, U_y, t, b) + naive_sigmoid(V_y, V_x, t, b))
