"""The encoded training records in real runs: tokenised into the stage's work dir once,
read back by ``--resume`` instead of tokenised again, gone with the work dir; and fed to
the Trainer through the packing collator (the GPU path) as well as the padding one."""

from __future__ import annotations

import pytest

import training.data
from tests.training_records import OPTIONS, Interrupt, write_records
from training.bundle import read_manifest
from training.finetune import default_work_dir, train_bundle
from training.options import TrainOptions
from training.tasks import RCG, RNP

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_resume_reads_the_encoded_records_back(tmp_path, monkeypatch):
    data = write_records(tmp_path / "data", tasks=(RCG,))
    out = tmp_path / "bundle"
    options = TrainOptions(**{**OPTIONS.__dict__, "tasks": (RCG,)})
    with pytest.raises(KeyboardInterrupt):
        train_bundle(data, "tiny", out, options, callbacks=[Interrupt(RCG, 3)])
    work = default_work_dir(out)
    # One file for the train records, one for the valid ones.
    assert len(list((work / RCG / "encoded").glob("encoded-*.arrow"))) == 2

    calls = []
    real = training.data.encode_record

    def counting(record, tokenizer, max_length):
        calls.append(record.id)
        return real(record, tokenizer, max_length)

    monkeypatch.setattr(training.data, "encode_record", counting)
    resumed = TrainOptions(**{**options.__dict__, "resume": True})
    train_bundle(data, "tiny", out, resumed)
    # Stage 0 is reused whole; rcg continues on the records it encoded before.
    assert calls == []
    assert read_manifest(out).tasks == {RCG: RCG}
    assert not work.exists()


def test_packed_batches_of_the_encoded_records_train(tmp_path):
    data = write_records(tmp_path / "data", tasks=(RNP,))
    out = tmp_path / "bundle"
    options = TrainOptions(**{**OPTIONS.__dict__, "tasks": (RNP,), "packing": True})
    train_bundle(data, "tiny", out, options)
    stage = read_manifest(out).training["stages"][RNP]
    # 8 records, 4 a step, 2 epochs.
    assert stage["steps"] == 4 and stage["train_loss"] is not None
    assert stage["encoding"]["examples"] == 8
