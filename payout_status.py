"""Why a settlement waits, in words the operator reads on its detail
(payout recovery, issue 9): queued, a worker busy with it, resuming after a
restart, an invoice replaced, a transfer repaired."""

from __future__ import annotations

from datetime import datetime

from .models import DcaPayment, DcaSettlement, utc_now


def wait_reason(
    settlement: DcaSettlement,
    legs: list[DcaPayment],
    boot_id: str,
    resume_every_s: int,
    now: datetime | None = None,
) -> str | None:
    now = now or utc_now()
    parts: list[str] = []
    until = settlement.claimed_until
    if settlement.status == "pending":
        parts.append(f"queued: a worker takes it within {resume_every_s} s")
    elif settlement.status == "processing":
        if until is not None and until > now:
            if settlement.claimed_by == boot_id:
                parts.append("worker busy: its legs are being paid now")
            else:
                parts.append(
                    "resuming after a restart: the stopped process's claim runs "
                    f"out at {until:%H:%M:%S} UTC, then it resumes"
                )
        else:
            parts.append(
                "resuming after a restart: its worker stopped; it is picked up "
                f"within {resume_every_s} s"
            )
    elif settlement.status == "errored":
        parts.append(
            "errored: retry pays the legs not completed (a dead invoice is "
            "replaced, a topped-up wallet pays)"
        )
    replaced = sum(leg.invoice_replacements for leg in legs)
    if replaced:
        parts.append(
            f"invoice replaced {replaced} time(s): LNbits had failed the old one, "
            "which was never paid"
        )
    repaired = sum(1 for leg in legs if leg.repaired_at is not None)
    if repaired:
        parts.append(
            f"{repaired} transfer(s) repaired: LNbits had debited the machine "
            "wallet but not credited the payee (a crash); finished forward"
        )
    return "; ".join(parts) or None
