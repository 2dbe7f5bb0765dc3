"""Shared test set-up: Hypothesis profiles and the backend ``device`` fixture."""
import os

from hypothesis import HealthCheck, settings

# CI: derandomized and bounded, so a run is repeatable and its time is predictable.
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The README's test command gets the same fixed examples as CI; HYPOTHESIS_PROFILE=dev draws
# fresh examples each run, HYPOTHESIS_PROFILE=thorough draws many more.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

import pytest  # noqa: E402

import minigrad as mg  # noqa: E402

CUDA_SKIP_REASON = "CUDA backend not available here (CuPy not installed or no GPU visible)"


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Every test that takes ``device`` runs on the CPU and, where a GPU and CuPy exist, on CUDA.

    CI runs the CUDA half on the strict CuPy stand-in: ``MINIGRAD_FAKE_CUDA=1 pytest -m cuda``.
    """
    if request.param == "cuda" and not mg.cuda.is_available():
        pytest.skip(CUDA_SKIP_REASON)
    return request.param


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on device 'cuda' (a GPU, or fake_cupy with MINIGRAD_FAKE_CUDA=1)")


def pytest_collection_modifyitems(items):
    """Mark the CUDA half of every ``device`` test, so ``-m cuda`` selects exactly it."""
    for item in items:
        if getattr(item, "callspec", None) is not None and item.callspec.params.get("device") == "cuda":
            item.add_marker(pytest.mark.cuda)
