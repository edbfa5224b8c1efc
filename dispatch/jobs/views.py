"""A job as clients see it: the one translation of a job into its wire form, used by every
room's controllers that answer with a job."""

from __future__ import annotations

import msgspec

from dispatch.jobs.queries import JobView
from dispatch.models import Job
from dispatch.money.escrow import job_pay
from dispatch.money.schemas import DisputeOut, pay_out
from dispatch.web.schemas import (
    Cancellation,
    JobOut,
    MaterialOut,
    OffersSummary,
    Point,
    RescheduleOut,
    Window,
    WorkerApproach,
    WorkerCard,
)
from geo.shapes import wkb_to_latlng


def job_view_out(view: JobView) -> JobOut:
    out = job_out(view.job, OffersSummary(wave=view.job.wave, **view.offer_counts))
    out.proxy_number = view.proxy_number
    out.start_pin = view.start_pin
    if view.worker is not None:
        out.worker = WorkerCard(*view.worker)
    if view.approach is not None:
        out.worker_approach = WorkerApproach(view.approach.distance_m, view.approach.at)
    return out


def job_out(job: Job, offers: OffersSummary | None = None) -> JobOut:
    lat, lng = wkb_to_latlng(job.location)
    window = None
    if job.window_start is not None and job.window_end is not None:
        window = Window(start=job.window_start, end=job.window_end)
    return JobOut(
        id=job.id,
        status=job.status,
        mode=job.mode,
        community_id=job.community_id,
        resident_id=job.resident_id,
        worker_id=job.worker_id,
        title=job.title,
        description=job.description,
        category=job.category,
        skills=list(job.skills),
        location=Point(lat=lat, lng=lng),
        address=job.address,
        window=window,
        price_cents=job.price_cents,
        currency=job.currency,
        materials=msgspec.convert(job.materials, list[MaterialOut]),
        insured=job.insured,
        created_at=job.created_at,
        review_reason=job.review_reason,
        offers=offers,
        assignment_version=job.assignment_version if job.worker_id is not None else None,
        cancellation=Cancellation(
            by=job.cancelled_by or "",
            reason=job.cancel_reason,
            fee_cents=job.cancellation_fee_cents or 0,
            at=job.cancelled_at,
        )
        if job.cancelled_at is not None
        else None,
        duration_min=job.duration_min,
        scheduled_start=job.scheduled_start,
        scheduled_end=job.scheduled_end,
        compensation_cents=job.compensation_cents,
        reschedule=msgspec.convert(job.reschedule, RescheduleOut) if job.reschedule else None,
        pay=pay_out(job_pay(job)),
        confirmed_at=job.confirmed_at,
        dispute=msgspec.convert(job.dispute, DisputeOut, strict=False) if job.dispute else None,
    )
