"""Crypto-shredding: the personal fields of stored events, encrypted under one data key per person.

A service declares which fields of which domain events are personal (`PersonalFields`). When such an
event is stored, `ShreddingMapper` takes those fields out of the event's state, encrypts them with the
person's data key and stores the ciphertext in their place; when it is read, it decrypts them back. Each
data key is stored wrapped by the key-encryption key of the configuration (`CRM_KEY_ENCRYPTION_KEY`) in
a table of its own (`<schema>.data_keys`). Erasing a person deletes the wrapped key: the events stay in
the log, intact and replayable, but their personal fields read as the redacted values the declaration
gives, for ever. `<schema>.erasure_ledger` keeps who was erased (ids only) so that a database restored
from a backup taken before an erasure can be shredded again (see `DataKeys.ledger` and the README).

Why these primitives (`cryptography`, no home-made crypto):
- Fields are sealed with AES-256-GCM-SIV, a nonce-misuse-resistant AEAD (RFC 8452), under a nonce
  derived from the event's position and with that position as associated data. Encryption is then
  deterministic: the same event encrypts to the same bytes, which the event store's check of an
  ambiguous commit relies on (ServiceApplication.already_stored compares stored bytes), and a sealed
  value copied to another event or another person does not decrypt. SIV leaks only whether two
  encryptions of one event position were identical.
- Data keys are wrapped with AES-256-GCM under the key-encryption key, with the person's id as
  associated data (a wrapped key moved to another person does not unwrap).

Unwrapped keys are cached per process for `CRM_DATA_KEY_TTL` seconds (default 5): erasure evicts the
key at once in the process that erases; another replica may still decrypt for at most that long. The
relay publishes in log order, so anything it publishes in that window precedes the customer_erased
event every subscriber then receives (and the erasure status waits out the window).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg.sql
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from crm_runtime import config

log = logging.getLogger(__name__)

#: Key, inside a stored event's state, of the sealed personal fields.
SEALED_KEY = "__personal__"
#: Development keys: used (with a warning) when the configuration gives none. Never for real data.
_DEV_KEK = base64.urlsafe_b64encode(hashlib.sha256(b"crm development key-encryption key").digest()).decode()
_DEV_CONTACT_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"crm development contact hash key").digest()).decode()
_warned: set[str] = set()


class SubjectErasedError(Exception):
    """A person who was erased: no new data key is made for them, so nothing new about them is stored."""

    def __init__(self, subject: uuid.UUID) -> None:
        super().__init__(f"{subject} was erased")
        self.subject = subject


def _configured_key(variable: str, dev_default: str) -> bytes:
    """A 32-byte key from `variable` (URL-safe base64); the development key, loudly, when unset."""
    text = config.setting(variable, "")
    if not text:
        if variable not in _warned:
            _warned.add(variable)
            log.warning("%s is not set: using the DEVELOPMENT key; personal data is NOT protected. "
                        "Set it to 32 random bytes, URL-safe base64 (e.g. `openssl rand -base64 32 | tr '+/' '-_'`)",
                        variable)
        text = dev_default
    key = base64.urlsafe_b64decode(text.encode())
    if len(key) != 32:
        raise ValueError(f"{variable} must be 32 bytes in URL-safe base64, got {len(key)} bytes")
    return key


def contact_hash_key() -> bytes:
    """The HMAC key that turns an email or a phone into its claim id (`CRM_CONTACT_HASH_KEY`; the
    customer domain's ContactIds hashes with it)."""
    return _configured_key("CRM_CONTACT_HASH_KEY", _DEV_CONTACT_KEY)


class KeyEncryptionKey:
    """Wraps and unwraps data keys (AES-256-GCM, the person's id as associated data)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_config(cls) -> KeyEncryptionKey:
        return cls(_configured_key("CRM_KEY_ENCRYPTION_KEY", _DEV_KEK))

    def wrap(self, subject: uuid.UUID, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, subject.bytes)

    def unwrap(self, subject: uuid.UUID, wrapped: bytes) -> bytes:
        return self._aead.decrypt(wrapped[:12], wrapped[12:], subject.bytes)


@dataclass(frozen=True)
class ErasureRecord:
    """One line of the erasure ledger: who (an id only), at whose request, when, and when shredded."""

    subject: uuid.UUID
    request_id: str
    requested_at: datetime
    shredded_at: datetime | None = None


class DataKeys(ABC):
    """Per-person data keys, wrapped by the key-encryption key, and the ledger of erased persons."""

    def __init__(self, kek: KeyEncryptionKey | None = None, ttl: float | None = None) -> None:
        self.kek = kek or KeyEncryptionKey.from_config()
        self.ttl = float(config.setting("CRM_DATA_KEY_TTL", "5")) if ttl is None else ttl
        self._cache: dict[uuid.UUID, tuple[float, AESGCMSIV]] = {}
        self._lock = threading.Lock()

    def cipher_for(self, subject: uuid.UUID) -> AESGCMSIV | None:
        """The person's data key, to read with; None when they were erased (or never had one)."""
        cached = self._cached(subject)
        if cached is not None:
            return cached
        wrapped = self._load(subject)
        return None if wrapped is None else self._remember(subject, wrapped)

    def preload(self, subjects: Iterable[uuid.UUID]) -> None:
        """Fetch the keys of every person in `subjects` not cached yet, in one query: a reader of many
        persons' events (the relay, a feed page, a rebuild) then decrypts them from the cache."""
        missing = [subject for subject in dict.fromkeys(subjects) if self._cached(subject) is None]
        if missing:
            for subject, wrapped in self._load_many(missing).items():
                self._remember(subject, wrapped)

    def cipher_for_new(self, subject: uuid.UUID) -> AESGCMSIV:
        """The person's data key, to write with: made on first use (racing writers all get the first
        one stored). SubjectErasedError for a person in the ledger."""
        cached = self._cached(subject)
        if cached is not None:
            return cached
        # One round trip: offer a fresh key; the store answers the one it keeps (ours, or an older one).
        wrapped = self._insert(subject, self.kek.wrap(subject, AESGCMSIV.generate_key(256)))
        if wrapped is None:
            raise SubjectErasedError(subject)
        return self._remember(subject, wrapped)

    def record_erasure(self, subject: uuid.UUID, request_id: str) -> ErasureRecord:
        """Enter `subject` in the ledger (the first request stays; asking again answers it)."""
        self._record(subject, request_id, datetime.now(UTC))
        record = self.erasure(subject)
        assert record is not None
        return record

    def shred(self, subject: uuid.UUID) -> ErasureRecord:
        """Delete the person's wrapped key for good and note when; the person must be in the ledger."""
        with self._lock:
            self._cache.pop(subject, None)
        self._delete(subject, datetime.now(UTC))
        with self._lock:
            self._cache.pop(subject, None)
        record = self.erasure(subject)
        if record is None:
            raise KeyError(f"{subject} is not in the erasure ledger")
        return record

    def _cached(self, subject: uuid.UUID) -> AESGCMSIV | None:
        with self._lock:
            entry = self._cache.get(subject)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._cache[subject]
                return None
            return entry[1]

    def _remember(self, subject: uuid.UUID, wrapped: bytes) -> AESGCMSIV:
        cipher = AESGCMSIV(self.kek.unwrap(subject, wrapped))
        if self.ttl > 0:
            with self._lock:
                self._cache[subject] = (time.monotonic() + self.ttl, cipher)
        return cipher

    @abstractmethod
    def erasure(self, subject: uuid.UUID) -> ErasureRecord | None:
        """The ledger line of `subject`, if they were erased (or asked to be)."""

    @abstractmethod
    def ledger(self) -> list[ErasureRecord]:
        """Every ledger line, oldest first."""

    @abstractmethod
    def unfinished(self, extra: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
        """Who of the ledger (and of `extra`) is not settled: not in the ledger, not shredded, or with a
        key stored again (a restore). One query, however long the ledger."""

    @abstractmethod
    def has_key(self, subject: uuid.UUID) -> bool:
        """Whether a wrapped key of `subject` is stored (bypassing the cache)."""

    @abstractmethod
    def _load(self, subject: uuid.UUID) -> bytes | None: ...

    @abstractmethod
    def _load_many(self, subjects: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        """The stored wrapped keys of `subjects` (the erased and unknown ones are left out)."""

    @abstractmethod
    def _insert(self, subject: uuid.UUID, wrapped: bytes) -> bytes | None:
        """Store `wrapped` unless a key is stored already (answer that one) or `subject` is in the ledger
        (answer None)."""

    @abstractmethod
    def _record(self, subject: uuid.UUID, request_id: str, at: datetime) -> None: ...

    @abstractmethod
    def _delete(self, subject: uuid.UUID, at: datetime) -> None: ...


class InMemoryDataKeys(DataKeys):
    """Data keys in a dict: for unit tests on eventsourcing's in-memory store."""

    def __init__(self, kek: KeyEncryptionKey | None = None, ttl: float | None = None) -> None:
        super().__init__(kek, ttl)
        self._keys: dict[uuid.UUID, bytes] = {}
        self._ledger: dict[uuid.UUID, ErasureRecord] = {}

    def erasure(self, subject: uuid.UUID) -> ErasureRecord | None:
        return self._ledger.get(subject)

    def ledger(self) -> list[ErasureRecord]:
        return sorted(self._ledger.values(), key=lambda r: r.requested_at)

    def has_key(self, subject: uuid.UUID) -> bool:
        return subject in self._keys

    def unfinished(self, extra: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
        return [s for s in dict.fromkeys([*self._ledger, *(extra or [])])
                if s not in self._ledger or self._ledger[s].shredded_at is None or s in self._keys]

    def _load(self, subject: uuid.UUID) -> bytes | None:
        return self._keys.get(subject)

    def _load_many(self, subjects: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        return {subject: self._keys[subject] for subject in subjects if subject in self._keys}

    def _insert(self, subject: uuid.UUID, wrapped: bytes) -> bytes | None:
        with self._lock:
            if subject in self._ledger:
                return None
            return self._keys.setdefault(subject, wrapped)

    def _record(self, subject: uuid.UUID, request_id: str, at: datetime) -> None:
        with self._lock:
            self._ledger.setdefault(subject, ErasureRecord(subject, request_id, at))

    def _delete(self, subject: uuid.UUID, at: datetime) -> None:
        with self._lock:
            self._keys.pop(subject, None)
            record = self._ledger.get(subject)
            if record is not None and record.shredded_at is None:
                self._ledger[subject] = ErasureRecord(record.subject, record.request_id, record.requested_at, at)


KEY_TABLES_DDL = """
CREATE TABLE IF NOT EXISTS {data_keys} (
    subject_id uuid PRIMARY KEY,
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {ledger} (
    subject_id uuid PRIMARY KEY,
    request_id text NOT NULL,
    requested_at timestamptz NOT NULL,
    shredded_at timestamptz
);
"""


class PostgresDataKeys(DataKeys):
    """Data keys and the ledger in the service's schema, through the event store's connection pool."""

    def __init__(self, datastore: Any, kek: KeyEncryptionKey | None = None, ttl: float | None = None) -> None:
        super().__init__(kek, ttl)
        self.datastore = datastore
        schema = datastore.schema or "public"
        self._keys = psycopg.sql.Identifier(schema, "data_keys")
        self._ledger = psycopg.sql.Identifier(schema, "erasure_ledger")

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as cur:
            cur.execute(psycopg.sql.SQL(KEY_TABLES_DDL).format(data_keys=self._keys, ledger=self._ledger))

    def _sql(self, text: str) -> psycopg.sql.Composed:
        return psycopg.sql.SQL(text).format(data_keys=self._keys, ledger=self._ledger)

    def erasure(self, subject: uuid.UUID) -> ErasureRecord | None:
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self._sql("SELECT subject_id, request_id, requested_at, shredded_at FROM {ledger} "
                                  "WHERE subject_id = %s"), (subject,))
            row = cur.fetchone()
        return _record_of(row) if row else None

    def ledger(self) -> list[ErasureRecord]:
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self._sql("SELECT subject_id, request_id, requested_at, shredded_at FROM {ledger} "
                                  "ORDER BY requested_at, subject_id"))
            return [_record_of(row) for row in cur.fetchall()]

    def has_key(self, subject: uuid.UUID) -> bool:
        return self._load(subject) is not None

    def unfinished(self, extra: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self._sql(
                "SELECT s.subject_id FROM (SELECT subject_id FROM {ledger} UNION SELECT unnest(%s::uuid[])) AS s "
                "LEFT JOIN {ledger} AS l ON l.subject_id = s.subject_id "
                "WHERE l.subject_id IS NULL OR l.shredded_at IS NULL "
                "OR EXISTS (SELECT 1 FROM {data_keys} AS k WHERE k.subject_id = s.subject_id) "
                "ORDER BY s.subject_id"), ([str(s) for s in extra or []],))
            return [row["subject_id"] for row in cur.fetchall()]

    def _load(self, subject: uuid.UUID) -> bytes | None:
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self._sql("SELECT wrapped_key FROM {data_keys} WHERE subject_id = %s"), (subject,))
            row = cur.fetchone()
        return bytes(row["wrapped_key"]) if row else None

    def _load_many(self, subjects: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self._sql("SELECT subject_id, wrapped_key FROM {data_keys} WHERE subject_id = ANY(%s)"),
                        (subjects,))
            return {row["subject_id"]: bytes(row["wrapped_key"]) for row in cur.fetchall()}

    def _insert(self, subject: uuid.UUID, wrapped: bytes) -> bytes | None:
        with self.datastore.transaction(commit=True) as cur:
            # No wait for the WAL flush here: the events sealed with this key commit afterwards, waiting
            # for their own flush, which covers this earlier commit record too (WAL is flushed up to a
            # position). A key lost in a crash before them seals nothing stored; a fresh one is made.
            cur.execute("SET LOCAL synchronous_commit = off")
            cur.execute(
                self._sql("INSERT INTO {data_keys} (subject_id, wrapped_key) SELECT %(s)s, %(w)s "
                          "WHERE NOT EXISTS (SELECT 1 FROM {ledger} WHERE subject_id = %(s)s) "
                          "ON CONFLICT (subject_id) DO NOTHING RETURNING wrapped_key"),
                {"s": subject, "w": wrapped},
            )
            row = cur.fetchone()
            if row is None:  # a racing writer stored one first, or the person is in the ledger
                cur.execute(self._sql("SELECT wrapped_key FROM {data_keys} WHERE subject_id = %s"), (subject,))
                row = cur.fetchone()
        return bytes(row["wrapped_key"]) if row else None

    def _record(self, subject: uuid.UUID, request_id: str, at: datetime) -> None:
        with self.datastore.transaction(commit=True) as cur:
            cur.execute(self._sql("INSERT INTO {ledger} (subject_id, request_id, requested_at) VALUES (%s, %s, %s) "
                                  "ON CONFLICT (subject_id) DO NOTHING"), (subject, request_id, at))

    def _delete(self, subject: uuid.UUID, at: datetime) -> None:
        with self.datastore.transaction(commit=True) as cur:
            cur.execute(self._sql("DELETE FROM {data_keys} WHERE subject_id = %s"), (subject,))
            cur.execute(self._sql("UPDATE {ledger} SET shredded_at = %s WHERE subject_id = %s AND shredded_at IS NULL"),
                        (at, subject))


def _record_of(row: Mapping[str, Any]) -> ErasureRecord:
    return ErasureRecord(row["subject_id"], row["request_id"], row["requested_at"], row["shredded_at"])


@dataclass(frozen=True)
class PersonalFields:
    """The personal fields of one domain event class and what each reads as once the key is shredded.

    `subject` names the state field holding the person's id; None means the event's originator.
    """

    redacted: Mapping[str, Any]
    subject: str | None = None


class ShreddingMapper(Mapper):  # type: ignore[type-arg]
    """eventsourcing's Mapper, sealing the declared personal fields under the person's data key."""

    def __init__(
        self,
        transcoder: Transcoder,
        keys: DataKeys,
        personal: Mapping[type, PersonalFields],
        compressor: Any = None,
        cipher: Any = None,
    ) -> None:
        super().__init__(transcoder, compressor=compressor, cipher=cipher)
        self.keys = keys
        self.personal = dict(personal)
        #: Topics of the events sealed under their originator's key (the person is the aggregate), and of
        #: those sealed under the key of the person a field names (an order under its customer's).
        self._sealed_by_originator = {get_topic(cls) for cls, spec in self.personal.items() if spec.subject is None}
        self._sealed_by_field = {get_topic(cls) for cls, spec in self.personal.items() if spec.subject is not None}

    def preload(self, stored_events: Iterable[Any]) -> None:
        """Fetch, in one query, the keys that reading these stored events (or notifications) will need."""
        self.keys.preload(subject for e in stored_events if (subject := self._sealed_for(e)) is not None)

    def _sealed_for(self, stored_event: Any) -> uuid.UUID | None:
        """Whose key reading `stored_event` needs, if any: its originator's, or the subject its sealed
        fields name (read from the stored state; not when a cipher or compressor hides it)."""
        if stored_event.topic in self._sealed_by_originator:
            return uuid.UUID(str(stored_event.originator_id))
        if stored_event.topic in self._sealed_by_field and self.cipher is None and self.compressor is None:
            sealed = self.transcoder.decode(stored_event.state).get(SEALED_KEY)
            return uuid.UUID(sealed["subject"]) if sealed else None
        return None

    def prepare(self, domain_events: Any) -> None:
        """Make (or fetch) the data keys these events will be sealed with, in the caller's thread: a
        group commit's leader then seals every queued save with cached keys instead of making each
        save's key in turn while the others wait."""
        for domain_event in domain_events:
            spec = self._sealing(domain_event)
            if spec is not None:
                state = vars(domain_event)
                self.keys.cipher_for_new(state[spec.subject] if spec.subject else state["originator_id"])

    def _sealing(self, domain_event: Any) -> PersonalFields | None:
        """The declaration to seal `domain_event` by; None when it holds nothing personal: undeclared, or
        every personal field holds what it reads as once shredded (stored as it is, needing no key, so
        a record of an erased person still takes anonymous facts)."""
        spec = self.personal.get(type(domain_event))
        if spec is None or all(value == spec.redacted[name] for name, value in vars(domain_event).items()
                               if name in spec.redacted):
            return None
        return spec

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        spec = self._sealing(domain_event)
        if spec is None:
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        subject = state[spec.subject] if spec.subject else state["originator_id"]
        personal = {name: state.pop(name) for name in spec.redacted if name in state}
        aad = _position(domain_event.originator_id, domain_event.originator_version, type(domain_event))
        sealed = self.keys.cipher_for_new(subject).encrypt(_nonce(aad), self.transcoder.encode(personal), aad)
        state[SEALED_KEY] = {"subject": str(subject), "sealed": base64.b64encode(sealed).decode()}
        stripped = object.__new__(type(domain_event))
        object.__setattr__(stripped, "__dict__", state)
        return super().to_stored_event(stripped)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        state = vars(domain_event)
        sealed = state.pop(SEALED_KEY, None)
        if sealed is None:
            return domain_event
        spec = self.personal.get(type(domain_event))
        cipher = self.keys.cipher_for(uuid.UUID(sealed["subject"]))
        if cipher is None or spec is None:
            # Shredded: the fields read as redacted, for ever (events stay replayable).
            state.update(dict(spec.redacted) if spec else {})
            return domain_event
        aad = _position(stored_event.originator_id, stored_event.originator_version, type(domain_event))
        plain = cipher.decrypt(_nonce(aad), base64.b64decode(sealed["sealed"]), aad)
        state.update(self.transcoder.decode(plain))
        return domain_event


def _position(originator_id: Any, version: int, cls: type) -> bytes:
    """Associated data: the event's place in the log, so a sealed value decrypts only where it was sealed."""
    return f"{originator_id}\x00{version}\x00{get_topic(cls)}".encode()


def _nonce(position: bytes) -> bytes:
    return hashlib.sha256(position).digest()[:12]


def data_keys_for(factory: Any) -> DataKeys:
    """The data keys beside an application's event store: PostgreSQL's, or in memory."""
    datastore = getattr(factory, "datastore", None)
    return PostgresDataKeys(datastore) if datastore is not None else InMemoryDataKeys()
