"""CI rounds: the decision per head commit of a task's PR (:class:`bot.core.ci.Round`),
kept so that the several events of one suite and their redeliveries decide once."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.core.ci import Round, RoundOutcome
from bot.store.engine import write_session
from bot.store.tables import CiRound, utcnow

_OUTCOMES: tuple[RoundOutcome, ...] = ("rerun", "green", "fix", "halt", "superseded")


def _outcome(value: str) -> RoundOutcome:
    return next((o for o in _OUTCOMES if o == value), "halt")


def _round(row: CiRound) -> Round:
    return Round(
        sha=row.head_sha,
        outcome=_outcome(row.outcome),
        signature=tuple(str(s) for s in row.signature),
        failing=tuple(str(s) for s in row.failing),
        manual=row.manual,
        note=row.note,
    )


class SqlCiRounds:
    """:class:`bot.loop.ports.CiRounds` in the bot's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rounds(self, task_id: int) -> tuple[Round, ...]:
        """The task's rounds, oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(CiRound).where(col(CiRound.task_id) == task_id).order_by(col(CiRound.id))
            ).all()
            return tuple(_round(r) for r in rows)

    def record(self, task_id: int, decided: Round, *, over: Collection[str] = ("rerun",)) -> bool:
        """Write the round of ``decided.sha`` unless the head has one whose outcome is not
        in ``over``; True if this call wrote it (one transaction, so one writer wins)."""
        fields: dict[str, Any] = {
            "outcome": decided.outcome,
            "signature": list(decided.signature),
            "failing": list(decided.failing),
            "manual": decided.manual,
            "note": decided.note,
        }
        try:
            with write_session(self.engine) as session:
                row = session.exec(
                    select(CiRound).where(
                        col(CiRound.task_id) == task_id, col(CiRound.head_sha) == decided.sha
                    )
                ).first()
                if row is None:
                    session.add(CiRound(task_id=task_id, head_sha=decided.sha, **fields))
                elif row.outcome in over:
                    for name, value in fields.items():
                        setattr(row, name, value)
                    row.updated_at = utcnow()
                    session.add(row)
                else:
                    return False
        except IntegrityError:
            return False  # another writer recorded this head first
        return True

    def annotate(self, task_id: int, sha: str, note: str) -> None:
        """Replace the note of a round (what its fix came to, once known)."""
        with write_session(self.engine) as session:
            row = session.exec(
                select(CiRound).where(col(CiRound.task_id) == task_id, col(CiRound.head_sha) == sha)
            ).first()
            if row is not None:
                row.note = note
                row.updated_at = utcnow()
                session.add(row)
