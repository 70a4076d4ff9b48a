"""seeding.mix_seed: the one seed derivation (training steps, per-sample reads, shuffle buffers)."""
from cloob.seeding import mix_seed


def test_mix_seed_is_the_documented_polynomial_and_separates_neighbours():
    p, m = 1_000_003, 2**63 - 1
    assert mix_seed(7, 1, 42) == ((7 * p + 1) * p + 42) % m  # written out: Horner's rule over the parts
    seeds = {mix_seed(0, r, s) for r in range(4) for s in range(1000)}
    assert len(seeds) == 4000  # every (rank, step) of a run gets its own stream
    assert mix_seed(1, 2) != mix_seed(2, 1) and all(0 <= x < m for x in seeds)
    assert mix_seed(2**70, -5) == mix_seed(2**70, -5) >= 0
