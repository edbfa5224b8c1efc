"""Reviews, both ways, in one transaction each: who may write one, whether it counts, the
subject's rating moved with it, the comment screened, the subject told."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.core import texts
from dispatch.core.errors import Conflict, Forbidden, NotFound
from dispatch.identity.principal import Principal
from dispatch.infra import outbox
from dispatch.infra.clock import Clock
from dispatch.models import Job, Review, User, Worker
from dispatch.models.base import get_row, is_db_id
from dispatch.trust import rules
from dispatch.trust.ranking import shown_rating
from dispatch.trust.screening import screen

_BOARD = text(
    """
    SELECT w.user_id, (SELECT count(*) FROM offers o JOIN jobs j ON j.id = o.job_id
                       WHERE o.worker_id = w.user_id AND o.created_at > :hour_ago
                         AND j.community_id = :cid)
    FROM workers w JOIN worker_communities wc ON wc.worker_id = w.user_id
    WHERE wc.community_id = :cid
    ORDER BY w.fast_accepts + w.open_refusals DESC, w.no_shows + w.late_cancels DESC, w.user_id
    LIMIT :n
    """
)

# One review at a time per (author, subject): two jobs reviewed at once must not both count.
_PAIR_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:pair, 0))")


class ReviewService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.clock = clock

    async def write(self, who: Principal, job_id: int, rating: int, comment: str | None) -> Review:
        """The caller's review of the other side of the job (409 `already_reviewed` for a
        second one, whatever the race)."""
        now = self.clock.now()
        try:
            async with self.sessions.begin() as session:
                job = await get_row(session, Job, job_id)
                if who.user_id == job.resident_id:
                    role = "resident"
                elif job.worker_id is not None and who.user_id == job.worker_id:
                    role = "worker"
                else:
                    raise Forbidden("only the job's two sides review it", code="not_yours")
                rules.check_reviewable(job.status, job.completed_at, now)
                subject = job.worker_id if role == "resident" else job.resident_id
                assert subject is not None  # a completed job has its worker
                if await session.scalar(
                    select(Review.id).where(
                        Review.job_id == job.id, Review.author_id == who.user_id
                    )
                ):
                    raise Conflict("you have reviewed this job already", code="already_reviewed")
                await session.execute(_PAIR_LOCK, {"pair": f"review:{who.user_id}:{subject}"})
                last = await session.scalar(
                    select(func.max(Review.created_at)).where(
                        Review.author_id == who.user_id,
                        Review.subject_id == subject,
                        Review.counted,
                    )
                )
                counted = rules.counts(last, now)
                region = (await self.communities.get(session, job.community_id)).phone_region
                review = Review(
                    job_id=job.id, author_id=who.user_id, subject_id=subject, role=role,
                    rating=rating, comment=screen(comment, region).text if comment else None,
                    counted=counted, created_at=now,
                )  # fmt: skip
                session.add(review)
                await session.flush()
                if counted:
                    rated = Worker if role == "resident" else User
                    key = Worker.user_id if role == "resident" else User.id
                    await session.execute(
                        update(rated)
                        .where(key == subject)
                        .values(
                            rating_sum=rated.rating_sum + rating,
                            rating_count=rated.rating_count + 1,
                        )
                    )
                await outbox.tell(
                    session, to_user_id=subject, kind="review",
                    body=texts.every("review.received", title=job.title, rating=rating),
                    payload={"job_id": job.id, "review_id": review.id, "rating": rating},
                    dedupe_key=f"review:{review.id}", now=now,
                )  # fmt: skip
                return review
        except IntegrityError as exc:  # the same author's concurrent second review
            if "uq_reviews_job_id_author_id" in str(exc.orig):
                raise Conflict(
                    "you have reviewed this job already", code="already_reviewed"
                ) from None
            raise

    async def of_job(self, who: Principal, job_id: int) -> list[Review]:
        """A job's reviews, for its participants and its operators."""
        async with self.sessions() as session:
            job = await get_row(session, Job, job_id)
            if who.user_id not in (job.resident_id, job.worker_id) and not who.can_operate(
                job.community_id
            ):
                raise Forbidden("only the job's participants (and its operators)", code="not_yours")
            rows = await session.scalars(
                select(Review).where(Review.job_id == job.id).order_by(Review.id)
            )
            return list(rows.all())

    async def board(
        self, who: Principal, community_id: int, limit: int = 200
    ) -> list[tuple[Worker, int, float | None]]:
        """The community's workers as operators weigh them: each worker with their offers in
        the community in the last hour and their shown rating; the anti-bot refusals first."""
        if not who.can_operate(community_id):
            raise Forbidden("not an operator of this community", code="not_yours")
        now = self.clock.now()
        async with self.sessions() as session:
            await self.communities.get(session, community_id)  # 404 for one that is not
            rows = await session.execute(
                _BOARD, {"cid": community_id, "hour_ago": now - timedelta(hours=1), "n": limit}
            )
            out = []
            for row in rows.all():
                worker = await session.get(Worker, row[0])
                assert worker is not None
                out.append((worker, row[1], shown_rating(worker.rating_sum, worker.rating_count)))
            return out

    async def of_worker(
        self, worker_id: int, limit: int = 50
    ) -> tuple[float | None, int, list[Review]]:
        """A worker's shown rating, its count and the latest reviews residents wrote of them."""
        async with self.sessions() as session:
            worker = await session.get(Worker, worker_id) if is_db_id(worker_id) else None
            if worker is None:
                raise NotFound(f"worker {worker_id} does not exist", code="worker_not_found")
            rows = await session.scalars(
                select(Review)
                .where(Review.subject_id == worker_id, Review.role == "resident")
                .order_by(Review.created_at.desc(), Review.id.desc())
                .limit(limit)
            )
            rating = shown_rating(worker.rating_sum, worker.rating_count)
            return rating, worker.rating_count, list(rows.all())
