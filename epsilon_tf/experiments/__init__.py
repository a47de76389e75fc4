"""The paper's experiments in one command: `python -m epsilon_tf.experiments`.

Trains Epsilon, its ablations (GPA only, GFP only, fixed fusion, no
regularizer), LESA and BiAM with the same seeds and budget, fits ESZSL and
scores chance, evaluates ZSL/GZSL with the exact protocol, and writes
`results.md`, `results.json`, `summary.md`, `summary.json` (Epsilon / the
best other method per column, `summary.py`), `figure1.png`, `figure3.png`
and TensorBoard images. Rerunning skips finished runs.
"""

from epsilon_tf.experiments.plan import ABLATIONS, MAIN, Run, plan


def __getattr__(name):
    # The runner imports TensorFlow; `python -m epsilon_tf.experiments`
    # checks its flags and quiets TensorFlow's start-up lines first.
    if name in ("Experiments", "base_configs"):
        from epsilon_tf.experiments import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ABLATIONS", "MAIN", "Experiments", "Run", "base_configs", "plan"]
