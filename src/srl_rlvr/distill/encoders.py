"""`srl-rlvr distill` for the encoder types: a small model from a large one by matching its outputs.

- embedding: the student learns to give the teacher's vector for every passage of the corpus and
  every training query, with sentence-transformers' MSELoss (Reimers & Gurevych 2020, "Making
  Monolingual Sentence Embeddings Multilingual using Knowledge Distillation", section 2: the same
  loss with the student's and teacher's inputs in one language). A student of another width gets
  a linear layer onto the teacher's width, so its vectors live in the teacher's space and an index
  the teacher built stays searchable.
- reranker: the student cross-encoder learns the teacher's score of each (query, candidate) pair of
  the training split, BM25's candidates as in reranker training, with sentence-transformers'
  cross-encoder MSELoss (Hofstaetter et al. 2020, "Improving Efficient Neural Ranking Models with
  Cross-Architecture Knowledge Distillation", section 3, pointwise).
- classifier (the intent router): the student learns the teacher's logits for each training prompt
  by least squares (Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?", section 2.2: logits,
  not probabilities, keep what the softmax flattens), through transformers' own regression loss.

Validation is the causal students' (`validate.py`): student / teacher on the held-out queries or
prompts (nDCG@10, or the router's accuracy) with a bootstrap interval over them, registered only when
its lower bound clears `distill.min_quality_ratio`, with the teacher's exact version as its parent.
Agreement is the share of held-out queries where both put the same passage first (the router: give
the same role).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from srl_rlvr.config import Config
from srl_rlvr.distill.validate import Validation, ratio_ci
from srl_rlvr.encoder_data import EncoderData, build_encoder_data
from srl_rlvr.errors import ConfigError
from srl_rlvr.evaluate.retrieval import NDCG_AT, per_query_scores

METRIC = {"embedding": f"ndcg@{NDCG_AT}", "reranker": f"ndcg@{NDCG_AT}", "classifier": "accuracy"}


def teacher_embeddings_dataset(teacher: Any, texts: list[str]) -> Any:
    """{text, label}: each text with the teacher's vector for it, the target MSELoss reads."""
    from datasets import Dataset

    vectors = teacher.encode(texts, convert_to_numpy=True, show_progress_bar=False)
    return Dataset.from_dict({"text": texts, "label": [v.tolist() for v in vectors]})


def distill_embedding(
    config: Config, teacher_folder: str, student: str, data: EncoderData, out: Path, device: str
) -> tuple[str, int]:
    """The student's folder, and how many texts it learned the teacher's vectors of."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from sentence_transformers.sentence_transformer.modules import Dense

    from srl_rlvr.encoder_models import load_embedding_model
    from srl_rlvr.train.encoder_args import trainer_arguments, without_printing

    enc = config.encoder
    teacher = load_embedding_model(teacher_folder, enc.pooling, device, enc.max_length)
    model = load_embedding_model(student, enc.pooling, device, enc.max_length)
    width, target = model.get_embedding_dimension(), teacher.get_embedding_dimension()
    if width != target:  # into the teacher's space: its index stays usable
        model.append(Dense(width, target, activation_function=None).to(model.device))
    texts = list(dict.fromkeys([*data.passages.values(), *(row["query"] for row in data.train)]))
    dataset = teacher_embeddings_dataset(teacher, texts)
    del teacher
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(
            **trainer_arguments(enc, scratch, config.seed, device, len(dataset))
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=MSELoss(model)
        )
        without_printing(trainer).train()
    model.save(str(out))
    return str(out), len(dataset)


def distill_reranker(
    config: Config, teacher_folder: str, student: str, data: EncoderData, out: Path, device: str
) -> tuple[str, int]:
    """The student's folder, and how many (query, passage) pairs it learned the teacher's scores of."""
    from datasets import Dataset
    from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import MSELoss

    from srl_rlvr.encoder_models import load_cross_encoder
    from srl_rlvr.train.encoder_args import trainer_arguments, without_printing

    enc = config.encoder
    teacher = load_cross_encoder(teacher_folder, device, enc.max_length)
    pairs = [(row["query"], data.passages[pid]) for row in data.train for pid in row["candidates"]]
    scores = teacher.predict(pairs, convert_to_numpy=True, show_progress_bar=False)
    del teacher
    dataset = Dataset.from_dict(
        {
            "query": [q for q, _ in pairs],
            "passage": [p for _, p in pairs],
            "label": [float(s) for s in scores],
        }
    )
    model = load_cross_encoder(student, device, enc.max_length)
    with tempfile.TemporaryDirectory() as scratch:
        args = CrossEncoderTrainingArguments(
            **trainer_arguments(enc, scratch, config.seed, device, len(dataset))
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=MSELoss(model))
        without_printing(trainer).train()
    model.save(str(out))
    return str(out), len(dataset)


def distill_classifier(
    config: Config, teacher_folder: str, student: str, data: EncoderData, out: Path, device: str
) -> tuple[str, int]:
    """The student's folder, and how many prompts it learned the teacher's logits of. Its head has
    the teacher's labels; trained as a regression on the logits, saved as a classifier again."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from srl_rlvr.encoder_models import load_classifier
    from srl_rlvr.train.encoder_args import trainer_arguments, without_printing

    enc = config.encoder
    teacher, teacher_tokenizer = load_classifier(teacher_folder, None, device)
    labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    texts = [row["text"] for row in data.train]
    logits = []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = teacher_tokenizer(
                texts[start : start + 32],
                padding=True,
                truncation=True,
                max_length=enc.max_length,
                return_tensors="pt",
            )
            logits += teacher(**batch.to(teacher.device)).logits.float().cpu().tolist()
    del teacher
    model, tokenizer = load_classifier(student, labels, device)
    model.config.problem_type = "regression"  # transformers' loss: MSE between logits and labels
    dataset = Dataset.from_dict({"text": texts, "label": logits}).map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=enc.max_length),
        batched=True,
        remove_columns=["text"],
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model.train(),
            args=TrainingArguments(**trainer_arguments(enc, scratch, config.seed, device, len(dataset))),
            train_dataset=dataset,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        without_printing(trainer).train()
    model.config.problem_type = "single_label_classification"  # served and evaluated as a classifier
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return str(out), len(dataset)


def _per_item(
    model_type: str, folder: str, data: EncoderData, config: Config, device: str
) -> tuple[np.ndarray, list[Any], float]:
    """The metric for each held-out query or prompt, the model's answer to each (the passage it put
    first, or the role it chose), and the seconds it took."""
    from srl_rlvr.evaluate.encoders import classifier_predictions, embedding_judged, reranker_judged

    start = time.perf_counter()
    if model_type == "classifier":
        predicted = classifier_predictions(folder, data, device, data.labels)
        seconds = time.perf_counter() - start
        truth = [row["label"] for row in data.test]
        return np.asarray([float(p == t) for p, t in zip(predicted, truth, strict=True)]), predicted, seconds
    judge = embedding_judged if model_type == "embedding" else reranker_judged
    judged = judge(folder, data, config.encoder, device)
    seconds = time.perf_counter() - start
    values = per_query_scores(judged, config.encoder.top_k)[METRIC[model_type]]
    return np.asarray(values), [j.ranking[:1] for j in judged], seconds


def validate_encoder_student(
    config: Config, teacher_folder: str, student_folder: str, data: EncoderData, device: str, report: Path
) -> Validation:
    """Teacher and student on the same held-out queries or prompts: the metric's ratio, agreement
    and speed."""
    kind = config.model.type
    t, teacher_answers, teacher_seconds = _per_item(kind, teacher_folder, data, config, device)
    s, student_answers, student_seconds = _per_item(kind, student_folder, data, config, device)
    mean_t, mean_s = float(t.mean()), float(s.mean())
    same = [a == b for a, b in zip(teacher_answers, student_answers, strict=True)]
    return Validation(
        teacher_metric=mean_t,
        student_metric=mean_s,
        quality_ratio=mean_s / mean_t if mean_t > 0 else 0.0,
        ratio_ci=ratio_ci(t, s, config.eval.bootstrap_samples, config.eval.bootstrap_seed),
        agreement=float(np.mean(same)),
        latency_ratio=student_seconds / teacher_seconds,  # the same texts for both
        tokens_per_second_ratio=None,
        n=len(same),
        min_quality_ratio=config.distill.min_quality_ratio,
        report=str(report),
    )


def distill_encoder(
    config: Config,
    teacher_reference: str,
    student: str,
    on_step: Callable[[str], None] = lambda message: None,
    register: bool = True,
) -> Any:
    """One teacher -> student distillation of `config.model.type`; a DistillResult (`run.py`)."""
    from srl_rlvr.distill.run import DistillResult, resolve_teacher, write_report
    from srl_rlvr.modeling import resolve_device

    kind = config.model.type
    teacher = resolve_teacher(config, teacher_reference)
    if teacher.folder is None:
        raise ConfigError(f"distill.teacher: a {kind} teacher is a registry version or a model folder")
    started = datetime.now(timezone.utc)
    run_dir = Path(config.output_dir) / "distill" / f"{kind}-student-{started:%Y%m%d-%H%M%S}"
    device = str(resolve_device(config.model.device))
    data = build_encoder_data(config)
    result = DistillResult(
        None, teacher.reference, student, str(run_dir), dataset=data.version(), model_type=kind
    )
    result.init = "given"
    if student == "tiny":
        from srl_rlvr.encoder_models import tiny_encoder_folder

        texts = [*data.passages.values(), *(row.get("query") or row["text"] for row in data.train)]
        student, result.init = (
            tiny_encoder_folder(run_dir / "student-init", texts, seed=config.seed),
            "random",
        )

    clock = time.perf_counter()
    what = {"embedding": "embeddings", "reranker": "scores", "classifier": "logits"}[kind]
    on_step(f"training {result.student} to match {teacher.reference}'s {what} ({config.encoder.steps} steps)")
    train = {"embedding": distill_embedding, "reranker": distill_reranker, "classifier": distill_classifier}[
        kind
    ]
    result.trained, result.traces = train(config, teacher.folder, student, data, run_dir / "model", device)
    result.questions = result.traces
    result.seconds["training"] = time.perf_counter() - clock

    clock = time.perf_counter()
    on_step("validating the student against the teacher on the held-out split")
    result.validation = validate_encoder_student(
        config, teacher.folder, result.trained, data, device, run_dir / "distill.md"
    )
    result.seconds["validation"] = time.perf_counter() - clock
    if result.validation.passed and register:
        result.registered = _register(config, result)
    write_report(result)
    return result


def _register(config: Config, result: Any) -> str:
    from srl_rlvr.tracking.registry import model_name_for, register
    from srl_rlvr.tracking.runs import mlflow_key, tracking_uri

    v = result.validation
    default = (
        "intent-router" if config.model.type == "classifier" else f"{config.task.name}-{config.model.type}"
    )
    name = config.distill.model_name or model_name_for(f"{default}-student")
    version = register(
        name,
        result.trained,
        stage="distill",
        parent=result.teacher,
        dataset=result.dataset,
        metrics={
            mlflow_key(METRIC[config.model.type]): v.student_metric,
            "quality_ratio": v.quality_ratio,
            "agreement": v.agreement,
            "latency_ratio": v.latency_ratio,
        },
        experiment=config.registry.experiment or config.task.name,
        uri=tracking_uri(config),
        tags={
            "teacher": result.teacher,
            "method": "mse",
            "init": result.init,
            "model_type": config.model.type,
        },
    )
    return version.reference
