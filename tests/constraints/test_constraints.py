import contextlib

import pytest
import torch
from torch import nn

from fairprune.constraints import (
    CEAGProblem,
    EqualizedLossProblem,
    FairnessState,
    NaiveFineTuning,
    SignedEqualizedLossProblem,
    StepInputs,
    batch_group_stats,
)
from fairprune.training import FineTuningEngine, make_dual_optimizer
from reference_lagrangian import cmp_state, constraint_state
from support import forbid_host_sync


def reference_state(num_groups=3, buffer_size=0, constrained=True):
    state = FairnessState(num_groups, buffer_size, constrained)
    # dense model: group accuracies 1.0, 0.5, 1.0 and losses 0.1, 0.5, 0.2 on 2 samples each
    state.reference.fill(
        torch.tensor([0.1, 0.1, 0.5, 0.5, 0.2, 0.2]),
        torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
        torch.tensor([0, 0, 1, 1, 2, 2]),
    )
    return state


def test_dense_reference_constants():
    ref = reference_state().reference
    assert ref.group_accuracy.tolist() == [1.0, 0.5, 1.0]
    assert ref.group_frequency.tolist() == pytest.approx([1 / 3] * 3)
    assert float(ref.accuracy) == pytest.approx(5 / 6)
    assert float(ref.loss) == pytest.approx(0.8 / 3)


def test_ceag_violations_by_hand_without_buffers():
    state = reference_state()
    problem = CEAGProblem(state, tolerance=0.05)
    loss = torch.tensor([0.3, 0.5, 0.9, 0.1], requires_grad=True)
    inputs = StepInputs(loss, torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 2]))
    cs = constraint_state(problem, inputs)
    batch_loss = 1.8 / 4
    expected = [(0.4 - 0.1) - (batch_loss - 0.8 / 3) - 0.05,
                (0.9 - 0.5) - (batch_loss - 0.8 / 3) - 0.05,
                (0.1 - 0.2) - (batch_loss - 0.8 / 3) - 0.05]
    assert cs.violation.tolist() == pytest.approx(expected)
    # strict: sparse batch accuracies 0.5, 0, 1; dense 1, .5, 1; weights = batch counts 2, 1, 1
    gaps = torch.tensor([0.5, 0.5, 0.0])
    overall = float((gaps * torch.tensor([2.0, 1.0, 1.0])).sum() / 4)
    assert cs.strict_violation.tolist() == pytest.approx((gaps - overall - 0.05).tolist())
    cs.violation.sum().backward()
    assert loss.grad is not None


def test_absent_groups_have_no_terms_and_no_dual_update():
    state = reference_state()
    problem = CEAGProblem(state, tolerance=0.0)
    inputs = StepInputs(torch.tensor([0.3, 0.5]), torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))
    cs = constraint_state(problem, inputs)
    assert cs.violation[1:].tolist() == [0.0, 0.0]
    assert cs.strict_violation[1:].tolist() == [0.0, 0.0]


def test_buffers_weight_overall_accuracy_by_training_frequency():
    state = FairnessState(2, 2, True)
    # imbalanced training set: group 0 has 3 samples (all right), group 1 one (right)
    state.reference.fill(torch.zeros(4), torch.ones(4), torch.tensor([0, 0, 0, 1]))
    problem = CEAGProblem(state, tolerance=0.0)
    inputs = StepInputs(torch.zeros(4), torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1]))
    cs = constraint_state(problem, inputs)
    # buffer accuracies 1.0 and 0.0; gaps 0 and 1; overall gap weighted 3:1 = 0.25
    assert cs.strict_violation.tolist() == pytest.approx([-0.25, 0.75])


def test_equalized_loss_band_and_buffers():
    state = reference_state(buffer_size=0)
    el = EqualizedLossProblem(state, band=0.1)
    loss = torch.tensor([0.2, 0.4, 1.2, 0.2], requires_grad=True)
    inputs = StepInputs(loss, torch.ones(4), torch.tensor([0, 0, 1, 2]))
    cs = constraint_state(el, inputs)
    mean = 0.5
    assert cs.violation.tolist() == pytest.approx([abs(0.3 - mean) - 0.1, abs(1.2 - mean) - 0.1,
                                                   abs(0.2 - mean) - 0.1])
    buffered = EqualizedLossProblem(reference_state(buffer_size=1), band=0.0)
    cs = constraint_state(buffered, inputs)
    losses = torch.tensor([0.4, 1.2, 0.2])  # newest per group
    assert cs.strict_violation.tolist() == pytest.approx((losses - losses.mean()).abs().tolist())


def tiny_engine(problem_cls, buffer_size=4, dual="sgd", tolerance=0.0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    constrained = problem_cls is not NaiveFineTuning
    state = reference_state(buffer_size=buffer_size if constrained else 0, constrained=constrained)
    problem = problem_cls(state, tolerance)
    dual_opt = make_dual_optimizer(dual, state.multiplier.parameters(), 0.5) if constrained else None
    primal = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, state, FineTuningEngine(problem, primal, dual_opt)


# nuPI is excluded from the sync check: cooper-optim 1.0.1's nuPI update branches on tensor
# values in Python (a host sync per step, dense or sparse multipliers). Our code adds none.
@pytest.mark.parametrize("problem_cls", [CEAGProblem, EqualizedLossProblem, NaiveFineTuning])
@pytest.mark.parametrize("dual", ["sgd", pytest.param("nupi", marks=pytest.mark.nupi)])
def test_engine_step_has_no_host_sync_and_updates(problem_cls, dual, monkeypatch):
    # the group-id range check reads values only for CPU tensors (no device sync there);
    # switch it off to see the step as it runs on a GPU
    monkeypatch.setattr("fairprune.training.engine.check_group_ids", lambda ids, n: None)
    model, state, engine = tiny_engine(problem_cls, dual=dual)
    guard = forbid_host_sync if dual == "sgd" else contextlib.nullcontext
    x, y, g = torch.randn(12, 4), torch.randint(0, 3, (12,)), torch.arange(12) % 3
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(6):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        with guard():
            engine.step(model, loss, (logits.argmax(1) == y).float(), g)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    multipliers = state.multiplier_values()
    assert torch.all(multipliers >= 0)
    if problem_cls is not NaiveFineTuning:
        assert multipliers.sum() > 0  # tolerance 0 and a random model: some constraint binds
    assert state.epoch_count.sum() == 6 * 12


def test_multiplier_ascends_on_violation_and_is_projected():
    model, state, engine = tiny_engine(CEAGProblem, buffer_size=0)
    loss = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    # group 1 all wrong while the others are right: ψ_1 > 0; groups 0 and 2: ψ < 0
    engine.step(model, loss * 1, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 1, 2]))
    values = state.multiplier_values()
    assert values[1] > 0 and values[0] == 0 and values[2] == 0


def test_constrained_problem_needs_multipliers_and_dual_optimizer():
    with pytest.raises(ValueError, match="needs a FairnessState with multipliers"):
        CEAGProblem(FairnessState(2, 0, constrained=False), 0.1)
    state = FairnessState(2, 0, constrained=True)
    with pytest.raises(ValueError, match="needs a dual optimizer"):
        FineTuningEngine(CEAGProblem(state, 0.1), torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1))
    with pytest.raises(ValueError, match="'dual_optimizer' must be"):
        make_dual_optimizer("adam", state.multiplier.parameters(), 0.1)


@pytest.mark.parametrize("ids, error, match", [
    (torch.tensor([0, 3]), ValueError, r"group_ids must lie in \[0, 3\)"),
    (torch.tensor([-1, 0]), ValueError, "from -1"),
    (torch.tensor([0.0, 1.0]), TypeError, "integer tensor"),
])
def test_bad_group_ids_raise_clearly(ids, error, match):
    model, _, engine = tiny_engine(CEAGProblem)
    logits = model(torch.randn(2, 4))
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1]), reduction="none")
    with pytest.raises(error, match=match):
        engine.step(model, loss, torch.ones(2), ids)


def test_buffer_size_must_be_positive():
    from fairprune.constraints import ReplayBuffer
    with pytest.raises(ValueError, match="replay buffer size must be an int >= 1"):
        ReplayBuffer(3, 0)


def test_multiplier_sum_is_projected_without_sync():
    state = FairnessState(4, 0, constrained=True)
    CEAGProblem(state, 0.01)  # sets the multipliers' constraint type (inequality)
    with torch.no_grad():
        state.multiplier.weight.copy_(torch.tensor([0.6, 0.6, 0.0, 0.3]))
    with forbid_host_sync():
        state.bound_multipliers_(0.9)
    # Euclidean projection: the same amount (0.2) is taken from every positive entry
    assert state.multiplier_values().tolist() == pytest.approx([0.4, 0.4, 0.0, 0.1])
    state.bound_multipliers_(None)  # no bound: unchanged
    state.bound_multipliers_(5.0)  # already below: unchanged
    assert float(state.multiplier_values().sum()) == pytest.approx(0.9)


def test_dual_gradients_equal_coopers_dual_lagrangian_gradient():
    """The engine writes the strict violations into the multipliers' gradients instead of
    differentiating Cooper's dual Lagrangian: both must agree."""
    from fairprune.training.engine import set_dual_gradients

    for problem_cls, buffer_size in [(CEAGProblem, 0), (CEAGProblem, 2), (EqualizedLossProblem, 2)]:
        state = reference_state(buffer_size=buffer_size)
        with torch.no_grad():
            state.multiplier.weight.copy_(torch.tensor([0.2, 0.0, 0.5]))
        problem = problem_cls(state, 0.01)
        loss = torch.tensor([0.3, 0.5, 0.9, 0.1, 2.0, 0.4], requires_grad=True)
        inputs = StepInputs(loss, torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0]),
                            torch.tensor([0, 0, 1, 2, 1, 1]))
        state_of_batch = cmp_state(problem, inputs)
        state_of_batch.compute_dual_lagrangian().backward()
        expected = state.multiplier.weight.grad.clone()
        state.multiplier.weight.grad = None
        strict = next(iter(state_of_batch.observed_constraints.values())).strict_violation
        set_dual_gradients(state.multiplier, strict)
        assert expected.abs().sum() > 0
        torch.testing.assert_close(state.multiplier.weight.grad, expected, rtol=0, atol=0)


def test_dual_gradients_take_the_multipliers_dtype_and_shape_and_no_graph():
    """Violations of another dtype or shape, or still attached to a graph, are converted:
    the multipliers' gradient is always a detached tensor of their own dtype and shape."""
    from cooper.multipliers import DenseMultiplier

    from fairprune.training.engine import set_dual_gradients

    state = reference_state(buffer_size=0)
    weight = state.multiplier.weight
    source = torch.tensor([0.25, -0.5, 1.0], dtype=torch.float64, requires_grad=True)
    for violation in (source.view(3, 1), source * 1, torch.tensor([0.25, -0.5, 1.0])):
        set_dual_gradients(state.multiplier, violation)
        grad = weight.grad
        assert grad.dtype == weight.dtype and grad.shape == weight.shape
        assert not grad.requires_grad and grad.grad_fn is None
        assert grad.flatten().tolist() == [0.25, -0.5, 1.0]
    # a non-contiguous layout, which a view cannot flatten, is copied
    four = DenseMultiplier(num_constraints=4)
    set_dual_gradients(four, torch.tensor([[0.25, 1.0], [-0.5, 2.0]]).t())
    assert four.weight.grad.flatten().tolist() == [0.25, -0.5, 1.0, 2.0]


def test_gradient_ascent_is_sgd_maximize_bit_for_bit():
    from fairprune.training import GradientAscent

    a, b = (nn.Parameter(torch.tensor([0.3, 0.0, 1.7])) for _ in range(2))
    ours, reference = GradientAscent([a], lr=0.37), torch.optim.SGD([b], lr=0.37, maximize=True)
    for grad in ([0.1, -0.2, 0.3], [1e-7, 5.0, -2.5]):
        a.grad, b.grad = torch.tensor(grad), torch.tensor(grad)
        ours.step()
        reference.step()
    assert torch.equal(a, b)
    ours.zero_grad()
    assert a.grad is None
    state = ours.state_dict()
    other = GradientAscent([a], lr=1.0)
    other.load_state_dict(state)
    assert other.param_groups[0]["lr"] == 0.37


@pytest.mark.parametrize("problem_cls, buffer_size", [
    (CEAGProblem, 0), (CEAGProblem, 2), (EqualizedLossProblem, 0), (EqualizedLossProblem, 2),
    (SignedEqualizedLossProblem, 0),
])
def test_primal_objective_has_the_gradient_of_coopers_lagrangian(problem_cls, buffer_size):
    """The engine's weighted per-sample loss and Cooper's primal Lagrangian (loss plus
    multipliers times the differentiable violations) have the same gradient, for every
    problem, with an absent group and with multipliers of both signs where allowed."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    group_ids = torch.tensor([0, 0, 1, 0, 1, 1, 0])  # group 2 absent from the batch
    gradients = []
    for path in ("cooper", "objective"):
        state = reference_state(buffer_size=buffer_size)
        values = [0.7, -0.4, 0.5] if problem_cls is SignedEqualizedLossProblem else [0.7, 0.4, 0.5]
        with torch.no_grad():
            state.multiplier.weight.copy_(torch.tensor(values).view_as(state.multiplier.weight))
        problem = problem_cls(state, 0.01)
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y, reduction="none")
        correct = (model(x).argmax(1) == y).float()
        inputs = StepInputs(loss, correct, group_ids)
        if path == "cooper":
            cmp_state(problem, inputs).compute_primal_lagrangian().backward()
        else:
            stats = batch_group_stats(loss.detach(), correct, group_ids, 3)
            problem.primal_objective(loss, stats).backward()
        gradients.append([p.grad.clone() for p in model.parameters()])
    for ours, coopers in zip(*gradients):
        assert coopers.abs().sum() > 0
        torch.testing.assert_close(ours, coopers, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("problem_cls, buffer_size", [
    (CEAGProblem, 0), (CEAGProblem, 2), (EqualizedLossProblem, 2)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_engine_step_takes_per_sample_losses_of_any_float_dtype(problem_cls, buffer_size, dtype):
    """A hand-written loop may pass half-precision (autocast) or double losses: the step
    promotes them against the float32 multipliers, buffers and dense constants."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(dtype)
    state = reference_state(buffer_size=buffer_size)
    engine = FineTuningEngine(problem_cls(state, 0.0), torch.optim.SGD(model.parameters(), lr=0.1),
                              make_dual_optimizer("sgd", state.multiplier.parameters(), 0.5))
    x, y, g = torch.randn(12, 4, dtype=dtype), torch.randint(0, 3, (12,)), torch.arange(12) % 3
    for _ in range(3):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        assert loss.dtype == dtype
        mean = engine.step(model, loss, (logits.argmax(1) == y).float(), g)
        assert torch.isfinite(mean)
    assert torch.isfinite(state.multiplier_values()).all() and state.multiplier_values().sum() > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
