"""A bundled prompt set for the generate scenario, with controlled input lengths, from text a PyPI
package ships: the AFINN word lists (package ``afinn``; ODbL), English and Danish.

Each prompt is an instruction followed by a fixed number of lexicon entries of one language, so
the input length is set by construction (LENGTHS words; the token count then depends on the
submission's tokenizer and is measured per request). The group column is the prompt's
**language** (a linguistic group, not a demographic one), so a numerics-induced shift in greedy
output fidelity between English and Danish prompts is a hardware-induced disparity.

The task has no labels and no references: generation quality with random weights is fidelity to
the fp32 reference profile (docs/generate.md). ``y_test`` is a placeholder the generate scenario
never reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from heptathlon.bench.tasks import Task, TaskData, register
from heptathlon.bench.tasks.lexicon import FILES, load_lexicons

SEED = 0
LENGTHS = (8, 16, 32, 48)  # words per prompt: the controlled input lengths
PER_CELL = 8  # prompts per (language, length): 2 x 4 x 8 = 64 prompts
HEADER = {"en": "Write one sentence using these words:", "da": "Skriv en sætning med disse ord:"}


def make_prompts() -> pd.DataFrame:
    df = load_lexicons().drop_duplicates("text")
    rng = np.random.default_rng(SEED)
    rows = []
    for lang in FILES:
        words = df.loc[df["language"] == lang, "text"].to_numpy(dtype=str)
        for n in LENGTHS:
            for i in range(PER_CELL):
                pick = rng.choice(words, size=n, replace=False)
                rows.append({"text": f"{HEADER[lang]} {', '.join(pick)}.", "language": lang, "words": n, "i": i})
    # Interleaved (round i, then length, then language), so the first requests of a short demo
    # already cover every language and length.
    out = pd.DataFrame(rows).sort_values(["i", "words", "language"], kind="stable")
    return out.drop(columns="i").reset_index(drop=True)


def load_prompt_task() -> TaskData:
    df = make_prompts()
    text = df["text"].to_numpy(dtype=str)
    placeholder = np.zeros(len(df), dtype=np.int64)
    return TaskData(name="prompts-en-da", x_train=text[:0], y_train=placeholder[:0], x_test=text, y_test=placeholder,
                    groups=df[["language"]].astype("string"), n_classes=2, feature_names=["text"],
                    input_type="text")


register(Task("prompts-en-da", "Generation prompts from the AFINN English and Danish word lists (package afinn), "
              f"{len(LENGTHS)} controlled lengths ({', '.join(map(str, LENGTHS))} words); group language; "
              "no references (quality is fidelity to the fp32 reference)", "fidelity", ("language",),
              load_prompt_task, generative=True))
