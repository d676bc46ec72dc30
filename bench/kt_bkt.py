"""Bayesian Knowledge Tracing through pyBKT, run in its own venv (pyBKT needs numpy 1.x).

    python kt_bkt.py TRAIN.csv TEST.csv OUT.csv

models/knowledge_tracing/training/baselines.py writes the rows (order_id, user_id,
skill_name, correct: one per
answer and skill) and reads back each test row's predicted chance of a right answer,
made by pyBKT from the rows before it on the same skill. One BKT model per skill, no
forgetting (the standard model); seed 0.
"""

import sys

import pandas as pd
from pyBKT.models import Model


def main(train_csv: str, test_csv: str, out_csv: str) -> None:
    train = pd.read_csv(train_csv, dtype={"skill_name": str})
    test = pd.read_csv(test_csv, dtype={"skill_name": str})
    model = Model(seed=0, num_fits=1)
    model.fit(data=train)
    predicted = model.predict(data=test).sort_values("order_id")
    predicted["correct_predictions"].to_csv(out_csv, index=False, header=False)


if __name__ == "__main__":
    main(*sys.argv[1:4])
