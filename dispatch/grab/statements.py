"""What grab-order dispatch says to PostgreSQL and Redis: the Lua of the claim pre-filter, the keys
it reads, and the set-based statements of a wave, a won claim and retired offers (each one round
trip; the outbox columns come from `dispatch.infra.outbox`)."""

from __future__ import annotations

from sqlalchemy import bindparam, select, text, update

from dispatch.core.texts import every
from dispatch.infra.outbox import ROWS_INSERT, recipient_text_sql
from dispatch.models import Job, Offer

CLAIM_LUA = """
-- One round trip for an accept: check the cached offer, then take the job's provisional claim.
-- KEYS[1] the offer's cache entry; ARGV: worker id, now (epoch s), claim TTL (ms), the claim
-- key's prefix, the booking-slot key's prefix. The claim key is named after the job the offer
-- names, so it is built here; it shares KEYS[1]'s hash tag, hence its slot on a Redis Cluster.
local offer = redis.call('HMGET', KEYS[1], 'w', 'j', 'x', 's', 'e')
if not offer[1] then return {'unknown', ''} end
if offer[1] ~= ARGV[1] then return {'not_yours', offer[2]} end
if tonumber(offer[3]) <= tonumber(ARGV[2]) then return {'expired', offer[2]} end
-- Anti-bot: an accept sooner than the community's min_accept_ms after the offer went out.
if offer[5] and tonumber(offer[5]) > tonumber(ARGV[2]) then return {'too_fast', offer[2], ''} end
local slot = ''
if offer[4] then
  -- A booking's offer names its slot (worker:start): one job at a time tries to book it; the
  -- others are answered here (the database still decides for the one that tries).
  slot = ARGV[5] .. offer[4]
  local booker = redis.call('GET', slot)
  if booker and booker ~= offer[2] then return {'slot_taken', offer[2], ''} end
  if not booker then redis.call('SET', slot, offer[2], 'PX', ARGV[3]) end
end
local claim = ARGV[4] .. offer[2]
local holder = redis.call('GET', claim)
if not holder then
  redis.call('SET', claim, ARGV[1], 'PX', ARGV[3])
  return {'claimed', offer[2], slot}
end
if holder == ARGV[1] then return {'claimed', offer[2], slot} end
return {'taken', offer[2], slot}
"""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

CLAIM_TAG = "{grab}"
"""The one hash tag of offer-cache and claim keys. An accept names only the offer, and a job's
claim key must be reachable from any of its offers' keys in one script, so they all share one
slot (on a Redis Cluster, one shard: a claim is a few small commands, far from its limit)."""
CLAIM_PREFIX = f"claim:{CLAIM_TAG}:"
SLOT_PREFIX = f"bslot:{CLAIM_TAG}:"
"""A booking slot's provisional key: `bslot:{grab}:<worker>:<start epoch s>`, the job trying it."""


def claim_key(job_id: int) -> str:
    return f"{CLAIM_PREFIX}{job_id}"


def offer_key(offer_id: int) -> str:
    return f"offer:{CLAIM_TAG}:{offer_id}"


# A wave in one statement: the job's wave and deadline, its offers, and an outbox row per offer
# (the offer event with the offer's new id put in, the text in the worker's language). :rows is
# a JSON array of {w: worker id, d: distance, b: outbox body in every language, p: payload}.
SEND_WAVE = text(
    """
WITH moved AS (
    UPDATE jobs SET wave = :wave, wave_deadline = :expires, updated_at = now()
    WHERE id = :job_id
), made AS (
    INSERT INTO offers (job_id, worker_id, wave, status, distance_m, created_at, expires_at)
    SELECT :job_id, r.w, :wave, 'pending', r.d, :now, :expires
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(w bigint, d float8)
    RETURNING id, worker_id
), told AS (
    {ROWS_INSERT}
    SELECT 'ws', 'offer', made.worker_id, {BODY},
           jsonb_set(r.p, '{offer,id}', to_jsonb(made.id)), 'pending', 'offer:' || made.id, 0
    FROM made JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(w bigint, b jsonb, p jsonb)
         ON r.w = made.worker_id
)
SELECT id, worker_id FROM made
""".replace("{ROWS_INSERT}", ROWS_INSERT).replace(
        "{BODY}", recipient_text_sql("r.b", "made.worker_id")
    )
)

# Close a job's pending offers (taken or withdrawn) and write each offeree's notice to the outbox
# from them, in one statement. :event is the notice with offer_id 0; each row gets its offer's.
# :body is the notice in every language (a `Text`'s JSON); each row is in its worker's.
_TELL_RETIRED = """
told AS (
    {ROWS_INSERT}
    SELECT 'ws', CAST(:kind AS text), retired.worker_id, {BODY},
           jsonb_set(CAST(:event AS jsonb), '{offer_id}', to_jsonb(retired.id)),
           'pending', CAST(:kind AS text) || ':' || retired.id, 0
    FROM retired
)""".replace("{ROWS_INSERT}", ROWS_INSERT).replace(
    "{BODY}", recipient_text_sql("CAST(:body AS jsonb)", "retired.worker_id")
)
RETIRE_OFFERS = text(f"""
WITH retired AS (
    UPDATE offers SET status = CAST(:status AS text), responded_at = :now
    WHERE job_id = :job_id AND status = 'pending'
    RETURNING id, worker_id
), {_TELL_RETIRED}
SELECT id, worker_id FROM retired ORDER BY id
""")  # noqa: S608 (constant fragments, no input)

# The rest of a won claim in one statement: the winner's offer accepted (if still pending and
# not expired), the assignment, and every other pending offer retired as taken with its notice.
# No row back means the offer had expired; otherwise one row per retired offer (or one with
# NULLs when there were none).
TAKE_OFFER = text(f"""
WITH taken AS (
    UPDATE offers SET status = 'accepted', responded_at = :now
    WHERE id = :offer_id AND status = 'pending' AND expires_at > :now
    RETURNING id
), assigned AS (
    INSERT INTO assignments (job_id, worker_id, offer_id, version, active, source, created_at)
    SELECT :job_id, :worker_id, taken.id, :version, true, 'grab', :now FROM taken
), retired AS (
    UPDATE offers SET status = 'taken', responded_at = :now
    WHERE job_id = :job_id AND status = 'pending' AND id <> :offer_id
      AND EXISTS (SELECT FROM taken)
    RETURNING id, worker_id
), {_TELL_RETIRED}
SELECT retired.id, retired.worker_id FROM taken LEFT JOIN retired ON true ORDER BY retired.id
""")  # noqa: S608 (constant fragments, no input)
TAKEN_BODY = every("offer.taken").as_json()
"""The taken notice's `:body` for `TAKE_OFFER` and `RETIRE_OFFERS` (every language)."""
WITHDRAWN_BODY = every("offer.withdrawn").as_json()

OFFER_AND_JOB = (
    select(Offer, Job).join(Job, Job.id == Offer.job_id).where(Offer.id == bindparam("offer_id"))
)
# The claim, with the job's new row loaded into the session's copy.
CLAIM_JOB = (
    update(Job)
    .where(
        Job.id == bindparam("claim_job"),
        Job.status == "open",
        Job.version == bindparam("claim_version"),
    )
    .values(
        status="assigned",
        worker_id=bindparam("claimant"),
        version=Job.version + 1,
        assignment_version=Job.assignment_version + 1,
        assigned_at=bindparam("claimed_at"),
        wave_deadline=None,
    )
    .returning(Job)
    .execution_options(synchronize_session=False, populate_existing=True)
)

# What fair ranking knows of a wave's candidates (`dispatch.trust.ranking.Record`): their
# reviews and failures, how many of their latest answered offers they took, and their offers in
# this community in the last hour. Both are read from a candidate's own index entries, newest
# first (`ix_offers_answered`; (worker_id, created_at), each offer's community looked up by its
# job's key in a subquery the planner cannot turn around). As a join, with the jobs table's
# statistics behind its growth, the planner walked every job of the community and probed each
# for the worker: 30,800 probes, 80 ms for 35 candidates in `bench.dispatch`.
RANKING_RECORDS = text(
    """
    SELECT w.user_id, w.rating_sum, w.rating_count, w.jobs_done, w.no_shows, w.late_cancels,
           a.answered, a.accepted, h.recent, h.last_at
    FROM workers w
    CROSS JOIN LATERAL (
        SELECT count(*) AS answered, count(*) FILTER (WHERE t.status = 'accepted') AS accepted
        FROM (SELECT o.status FROM offers o
              WHERE o.worker_id = w.user_id AND o.status IN ('accepted', 'declined', 'expired')
              ORDER BY o.created_at DESC LIMIT :recent_offers) t
    ) a
    CROSS JOIN LATERAL (
        SELECT count(*) AS recent, max(o.created_at) AS last_at
        FROM offers o
        WHERE o.worker_id = w.user_id AND o.created_at > :hour_ago
          AND (SELECT j.community_id FROM jobs j WHERE j.id = o.job_id) = :cid
    ) h
    WHERE w.user_id = ANY(CAST(:ids AS bigint[]))
    """
)

# The unfinished grab jobs a worker holds, and bookings already under way.
OPEN_ASSIGNMENTS = text(
    """
    SELECT count(*) FROM assignments a JOIN jobs j ON j.id = a.job_id
    WHERE a.worker_id = :worker_id AND a.active
      AND (j.status = 'in_progress' OR (j.status = 'assigned' AND j.mode = 'grab'))
    """
)
