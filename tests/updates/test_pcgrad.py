"""PCGrad: the surgery by hand, its order, and the fast trainer step against the textbook one."""

import copy

import numpy as np
import pytest
import torch

from mtsearch.errors import ConfigError
from mtsearch.updates import UPDATES
from mtsearch.updates.pcgrad import pcgrad_coefficients, pcgrad_combine, projection_orders
from tests.updates.helpers import delta, loss_fn, max_diff, random_batches, sgd_handle, snapshot, tiny_model
from tests.updates.reference import naive_pcgrad_step


def _reference(grads: torch.Tensor, orders: list[list[int]]) -> torch.Tensor:
    """Algorithm 1 of the paper, written over vectors in float64, independent of the Gram trick."""
    g = grads.double()
    out = torch.zeros_like(g[0])
    for i, order in enumerate(orders):
        gi = g[i].clone()
        for j in order:
            dot = gi @ g[j]
            if dot < 0:
                gi -= dot / (g[j] @ g[j]) * g[j]
        out += gi
    return out


def test_a_conflicting_pair_by_hand():
    # g1 . g2 = -1 < 0. g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1).
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    coef = pcgrad_coefficients((g @ g.T).numpy(), [[1], [0]])
    projected = torch.tensor(coef, dtype=torch.float32) @ g
    assert torch.allclose(projected, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    # Each projected gradient is orthogonal to the other task's original gradient.
    assert abs(float(projected[0] @ g[1])) < 1e-7 and abs(float(projected[1] @ g[0])) < 1e-7
    assert torch.allclose(pcgrad_combine(g, np.random.default_rng(0)), torch.tensor([0.5, 1.5]))


def test_agreeing_gradients_are_left_untouched():
    g = torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 0.5], [0.5, 0.5, 0.5]])  # all pairwise dots > 0
    assert (g @ g.T > 0).all()
    assert np.array_equal(
        pcgrad_coefficients((g @ g.T).numpy(), projection_orders(3, np.random.default_rng(1))), np.eye(3)
    )
    assert torch.allclose(pcgrad_combine(g, np.random.default_rng(1)), g.sum(0))


def test_two_tasks_never_end_up_against_either_gradient():
    rng = np.random.default_rng(0)
    conflicts = 0
    for _ in range(200):
        g = torch.tensor(rng.normal(size=(2, 5)), dtype=torch.float64)
        conflicts += int(g[0] @ g[1] < 0)
        out = pcgrad_combine(g, rng)
        # With two tasks g1' + g2' has a non-negative dot with both originals (Yu et al., Thm 1 setting).
        assert float(out @ g[0]) >= -1e-9 and float(out @ g[1]) >= -1e-9
    assert conflicts > 50  # the property was exercised on conflicting pairs, not only agreeing ones


def test_projection_order_matters_and_is_seeded():
    # Task 0 conflicts with both others; projecting against g1 then g2, or g2 then g1, ends in
    # different places: (0.25, 0.5, 0.25) vs (0.25, 0.25, 0.5). Tasks 1 and 2 each end at
    # (0, 1, 0) and (0, 0, 1) whatever the order. So the sum is one of two vectors:
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    a, b = torch.tensor([0.25, 1.5, 1.25]), torch.tensor([0.25, 1.25, 1.5])
    seen = set()
    for seed in range(12):
        out = pcgrad_combine(g, np.random.default_rng(seed))
        again = pcgrad_combine(g, np.random.default_rng(seed))
        assert torch.equal(out, again)  # same seed, same answer
        assert torch.allclose(out, a) or torch.allclose(out, b)
        seen.add("a" if torch.allclose(out, a) else "b")
        assert torch.allclose(out, _reference(g, projection_orders(3, np.random.default_rng(seed))).float())
    assert seen == {"a", "b"}
    # A torch generator works the same way.
    t1 = pcgrad_combine(g, torch.Generator().manual_seed(3))
    assert torch.equal(t1, pcgrad_combine(g, torch.Generator().manual_seed(3)))


def test_gram_algebra_matches_the_vector_algorithm():
    rng = np.random.default_rng(7)
    g = torch.tensor(rng.normal(size=(4, 300)), dtype=torch.float32)
    for seed in range(5):
        orders = projection_orders(4, np.random.default_rng(seed))
        fast = pcgrad_combine(g, np.random.default_rng(seed))
        assert torch.allclose(fast.double(), _reference(g, orders), atol=1e-5)
    # A list of flat vectors is accepted too.
    assert torch.equal(
        pcgrad_combine(list(g), np.random.default_rng(0)), pcgrad_combine(g, np.random.default_rng(0))
    )


def test_fast_step_equals_the_naive_step_on_the_tiny_model():
    """The key check of the fast path: one backward per task, encoder grads moved to a buffer,
    Gram-space surgery, written back as views == retain_graph + full copies + vector loops."""
    model, _ = tiny_model()
    batches = random_batches(seed=1)
    tasks = ["sst", "para", "sts"]
    fast_model, naive_model, plain_model = model, copy.deepcopy(model), copy.deepcopy(model)
    updates = {}
    for label, m in (("fast", fast_model), ("naive", naive_model), ("combined", plain_model)):
        m.train()  # dropout on: both draw the same masks (same seed, forwards in the same order)
        before = snapshot(m)
        optim = sgd_handle(m, lr=1.0, max_grad_norm=1.0)
        torch.manual_seed(123)
        if label == "fast":
            rule = UPDATES.create(
                "pcgrad", UPDATES.get("pcgrad").Args(), tasks=tasks, rng=np.random.default_rng(5)
            )
            losses = rule.step(tasks, loss_fn(m, batches), optim)
        elif label == "naive":
            losses_naive = naive_pcgrad_step(tasks, loss_fn(m, batches), optim, np.random.default_rng(5))
        else:
            UPDATES.create("combined", UPDATES.get("combined").Args(), tasks=tasks).step(
                tasks, loss_fn(m, batches), optim
            )
        updates[label] = delta(m, before)
        assert all(p.grad is None for p in m.parameters())  # the step leaves no gradient behind
    assert losses == pytest.approx(losses_naive, abs=1e-6)
    # Same parameter update, encoder and heads, within 1e-5 (lr=1: the update is the clipped gradient).
    assert max_diff(updates["fast"], updates["naive"]) < 1e-5
    biggest = max(float(d.abs().max()) for d in updates["fast"].values())
    assert biggest > 1e-3
    # ...and the surgery did something on this batch: the update is not the combined loss's.
    assert max_diff(updates["fast"], updates["combined"]) > 1e-4


def test_pcgrad_needs_two_tasks():
    from mtsearch.config import make_config

    with pytest.raises(ConfigError, match=r"update 'pcgrad'.*tasks has only one \(sst\)"):
        make_config({"update": "pcgrad", "tasks": ["sst"]})
    make_config({"update": "pcgrad", "tasks": ["sst", "sts"]})


# ---------------------------------------------------------------- scope and reduction (issue 11)
class _Linear(torch.nn.Module):
    """Shared weights w and one scalar head per task: loss_t = a_t . w + b_t h_t, so the
    gradient of task t is (a_t on w, b_t on its own head, nothing on the other head)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.h = torch.nn.ParameterDict(
            {"sst": torch.nn.Parameter(torch.zeros(1)), "sts": torch.nn.Parameter(torch.zeros(1))}
        )


def _hand_step(
    update_args: dict,
    a: dict[str, torch.Tensor] | None = None,
    drawn: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """One pcgrad step on loss_t = a_t . w + h_t, SGD at lr 1 from zeros; ``drawn``: the step's
    losses in order (a task drawn twice is two losses, as with partial batches)."""
    from mtsearch.train.optim import OptimHandle

    model = _Linear()
    a = a or {"sst": torch.tensor([1.0, 0.0]), "sts": torch.tensor([-1.0, 1.0])}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    handle = OptimHandle(
        opt, sched, list(model.parameters()), None, shared_params=[model.w],
        head_params={t: [model.h[t]] for t in a},
    )  # fmt: skip
    rule = UPDATES.create("pcgrad", UPDATES.parse_args("pcgrad", update_args, "update_args"), tasks=list(a))
    rule.step(drawn or list(a), lambda t: (a[t] * model.w).sum() + model.h[t].sum(), handle)
    # SGD at lr 1 from zeros: the parameters are minus the combined gradient
    return {"w": -model.w.detach(), "sst": -model.h["sst"].detach(), "sts": -model.h["sts"].detach()}


def test_scope_and_reduction_by_hand():
    # Whole-model gradients g1 = (1, 0 | 1, 0), g2 = (-1, 1 | 0, 1) (w | head sst, head sts).
    # scope all: g1.g2 = -1, |g1|^2 = 2, |g2|^2 = 3:
    #   g1' = g1 + g2/3 = (2/3, 1/3 | 1, 1/3),  g2' = g2 + g1/2 = (-1/2, 1 | 1/2, 1).
    #   mean where both tasks have a gradient (w): (1/12, 2/3); sum on the heads: 3/2 and 4/3
    #   (each head receives a part of the other task's gradient).
    got = _hand_step({"scope": "all", "reduction": "mean"})
    assert torch.allclose(got["w"], torch.tensor([1 / 12, 2 / 3]))
    assert torch.allclose(got["sst"], torch.tensor([1.5])) and torch.allclose(
        got["sts"], torch.tensor([4 / 3])
    )
    # scope all, sum: w = g1' + g2' = (1/6, 4/3); heads as above.
    got = _hand_step({"scope": "all", "reduction": "sum"})
    assert torch.allclose(got["w"], torch.tensor([1 / 6, 4 / 3])) and torch.allclose(
        got["sst"], torch.tensor([1.5])
    )
    # scope shared (the default): w alone is projected, (1,0).(-1,1) = -1: (1/2, 1/2) + (0, 1);
    # each head keeps its own task's gradient, 1.
    got = _hand_step({})
    assert torch.allclose(got["w"], torch.tensor([0.5, 1.5]))
    assert torch.allclose(got["sst"], torch.tensor([1.0])) and torch.allclose(got["sts"], torch.tensor([1.0]))
    # scope shared, mean: w halved, heads untouched.
    got = _hand_step({"reduction": "mean"})
    assert torch.allclose(got["w"], torch.tensor([0.25, 0.75])) and torch.allclose(
        got["sts"], torch.tensor([1.0])
    )


def test_scope_all_mean_equals_tsengs_implementation_on_the_tiny_model():
    from tests.updates.reference import tseng_pcgrad

    model, cfg = tiny_model(update="pcgrad", update_args={"scope": "all", "reduction": "mean"})
    model.eval()  # no dropout: both computations see the same gradients
    batches = random_batches()
    tasks = list(batches)
    reference = copy.deepcopy(model)
    params = [p for p in reference.parameters() if p.requires_grad]
    grads, has = [], []
    for t in tasks:
        reference.zero_grad(set_to_none=True)
        loss_fn(reference, batches)(t).backward()
        grads.append(
            torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        )
        has.append(torch.cat([torch.full((p.numel(),), float(p.grad is not None)) for p in params]))
    assert any(
        float(grads[i] @ grads[j]) < 0 for i in range(3) for j in range(3) if i != j
    )  # a conflict to fix
    rule = UPDATES.create("pcgrad", cfg.args("update"), tasks=tasks, rng=np.random.default_rng(5))
    orders = [
        [i, *o] for i, o in enumerate(projection_orders(3, np.random.default_rng(5)))
    ]  # self first: a no-op
    # Tseng's loop in float64: in float32 its dot products over the model's ~2M gradient
    # entries (|g_sts|^2 ~ 4e3) carry errors of ~5e-6 on the result, more than this check's
    # tolerance, while the rule's Gram matrix is float64; exact arithmetic is the fair yardstick.
    expected = tseng_pcgrad([g.double() for g in grads], has, orders)

    before = snapshot(model)
    rule.step(tasks, loss_fn(model, batches), sgd_handle(model, lr=1.0, max_grad_norm=None))
    got = delta(model, before)
    names = [n for n, p in reference.named_parameters() if p.requires_grad]
    flat = torch.cat([-got[n].reshape(-1) for n in names]).double()
    assert torch.allclose(flat, expected, atol=1e-6, rtol=1e-4)
    # heads got components of other tasks' gradients: not their own task's gradient alone
    own = sum(grads)  # a head's own gradient is its task's only non-zero row there
    head = torch.cat(
        [torch.full((p.numel(),), n.startswith("heads.")) for n, p in zip(names, params, strict=True)]
    )
    assert not torch.allclose(flat[head.bool()], own[head.bool()].double(), atol=1e-6)


def test_mean_reached_averages_each_parameter_over_the_losses_that_reach_it():
    # 001's partial batches: sst drawn twice, sts once, so three losses in one step.
    # loss_sst = (1, 0) . w + h_sst, loss_sts = (0, 1) . w + h_sts: no conflict, no projection.
    # 001's formula, per parameter: the mean over the losses whose gradient reaches it.
    #   w: reached by all three, ((1, 0) + (1, 0) + (0, 1)) / 3 = (2/3, 1/3)
    #   h_sst: reached by the two sst losses, (1 + 1) / 2 = 1;  h_sts: by one, 1.
    def run(reduction: str) -> dict[str, torch.Tensor]:
        a = {"sst": torch.tensor([1.0, 0.0]), "sts": torch.tensor([0.0, 1.0])}
        return _hand_step({"scope": "all", "reduction": reduction}, a, ["sst", "sts", "sst"])

    got = run("mean_reached")
    assert torch.allclose(got["w"], torch.tensor([2 / 3, 1 / 3]))
    assert torch.allclose(got["sst"], torch.tensor([1.0])) and torch.allclose(got["sts"], torch.tensor([1.0]))
    # Tseng's 'mean' sums where not every loss reaches: the sst head's gradient doubles.
    got = run("mean")
    assert torch.allclose(got["w"], torch.tensor([2 / 3, 1 / 3])) and torch.allclose(
        got["sst"], torch.tensor([2.0])
    )
