"""The developer's entry point to a local network: publish models, query the service, read blocks.

The CLI, the GraphQL node service, the pytest plugin and the examples are thin layers over
:class:`Client`; nothing they do is done anywhere else. Typical use::

    models = Path("../shared/models/stories260K")
    with Client.up(tmp_path, validators=4) as client, WeightServer(models) as server:
        published = client.publish_model(
            "stories260K",
            weights=models / "stories260K.bin",
            tokenizer=models / "tok512.bin",
            weights_urls=[server.url("stories260K.bin")],
            tokenizer_urls=[server.url("tok512.bin")],
        )
        stream = client.generate(GenerateQuery(model="stories260K", prompt="Once upon a time"))
        for token in stream:
            print(token.text, end="")
        print(stream.record.seed)
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgechain import wallet
from edgechain.applications import register_applications
from edgechain.blob_publishing import BlobPublication
from edgechain.chain.certificate import Certificate, CertifiedBlock
from edgechain.chain.messages import IncomingBundle
from edgechain.chain.network import (
    NETWORK_FILE,
    Chain,
    ExpectedHead,
    Network,
    NetworkStatus,
    VerifyReport,
)
from edgechain.chain.policy import ResourcePolicy
from edgechain.contract.operations import FileRef, RegisterModel, RetireModel
from edgechain.contract.registry import APPLICATION_NAME, CertifiedModel, ModelRegistryService
from edgechain.contract.story_book import APPLICATION_NAME as STORY_BOOK
from edgechain.contract.story_book import Story, StoryBookService
from edgechain.errors import BlobCorrupted, InputError, InvalidParameter, UsageError
from edgechain.publishing import (
    FileServer,
    HashedFile,
    Progress,
    blob_file_refs,
    check_publish_text,
    download_file,
    hash_file,
    is_url,
    url_file_refs,
)
from edgechain.service.cache import object_path
from edgechain.service.engine import ENGINE_KINDS
from edgechain.service.engine.base import Engine
from edgechain.service.engine.model_files import Q8_HEADER_BYTES, parse_checkpoint_header
from edgechain.service.fetch import FetchPolicy
from edgechain.service.query import GenerateQuery
from edgechain.service.query_stream import QueryStream
from edgechain.service.runtime import DownloadProgress, ModelService, PreparedQuery
from edgechain.story_mint import (
    GeneratedStory,
    MintedStory,
    PendingMint,
    certify_mint,
    install_oracles,
    prepare_mint,
)
from edgechain.url_check import UrlCheck, check_urls

if typing.TYPE_CHECKING:
    from edgechain.chain.modules import CreatedApplication
    from edgechain.user_applications import CreatedApp, PublishedModule

__all__ = [
    "Client",
    "FileServer",
    "GeneratedStory",
    "HashedFile",
    "MintedStory",
    "PendingGeneration",
    "PendingMint",
    "Progress",
    "PublishedModel",
    "default_network_dir",
    "download_file",
    "hash_file",
]

# Which engine each validator re-executes oracle calls with, by default: the engine kinds in
# turn (registered with chain/oracle.py by edgechain/applications.py).
ENGINE_CYCLE = ENGINE_KINDS

#: Environment variable naming the default network directory.
NETWORK_DIR_ENV = "EDGECHAIN_DIR"

# Every network a client opens runs the registry and the story book.
register_applications()


def default_network_dir() -> Path:
    """``$EDGECHAIN_DIR`` if set, else a per-user directory (``$XDG_DATA_HOME/edgechain/net``)."""
    explicit = os.environ.get(NETWORK_DIR_ENV)
    if explicit:
        return Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "edgechain" / "net"


@dataclass(frozen=True)
class PendingGeneration:
    """A query resolved against certified state (:meth:`Client.prepare_generation`), to start."""

    prepared: PreparedQuery
    service: ModelService

    def start(
        self,
        *,
        progress: DownloadProgress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> QueryStream:
        """Fetch, verify and load the model and start generating (slow: needs no client
        lock); see :meth:`ModelService.start`."""
        return self.service.start(self.prepared, progress=progress, cancelled=cancelled)


def _hex_id(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InvalidParameter(f"{what} {text!r}: 64 hex digits")
    return value


@dataclass(frozen=True)
class _CertifyOptions:
    """What a publish passes from its arguments to the step that certifies the entry."""

    description: str | None
    license: str | None
    check_urls: bool
    progress: Callable[[str, int, int | None], None] | None
    #: RegisterModel's format: "llama2c", or "gguf" (the tokenizer is in the weights file).
    format: str = "llama2c"


def _same_bytes(a: FileRef, b: FileRef) -> bool:
    """The registry's notion of "the same file" (contract/registry.py): hash and size; a
    registration that differs only in URLs changes nothing there either."""
    return (a.blake3, a.size) == (b.blake3, b.size)


@dataclass(frozen=True)
class PublishedModel:
    """What ``publish_model`` certified: the entry as certified state now holds it."""

    model: CertifiedModel
    certificate: Certificate
    #: With ``blobs=True``: the chunks, blobs and blocks the publish needed
    #: (edgechain/blob_publishing.py).
    blobs: BlobPublication | None = None
    #: Every URL the entry certifies, each checked to serve the hashed bytes (empty when the
    #: check was skipped, or nothing was certified).
    checked_urls: tuple[UrlCheck, ...] = ()
    #: True when certified state already held this name and version with the same bytes, so
    #: no block was added (``certificate`` is then the one that made the entry current).
    unchanged: bool = False


class Client:
    """A local network opened from its directory, with the model registry and its service."""

    def __init__(
        self,
        network: Network,
        *,
        engine: Engine | None = None,
        fetch_policy: FetchPolicy | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        chain: str | None = None,
    ) -> None:
        self.network = network
        #: The chain this client's commands act on (``--chain``; default: the wallet's).
        self.chain_name = chain if chain is not None else wallet.default_chain(network.path)
        network.chain(self.chain_name)  # UsageError, naming the chains, if there is none
        self.fetch_policy = fetch_policy or FetchPolicy()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else network.path / "cache"
        self._engine = engine
        self._service: ModelService | None = None
        self._oracles_installed = False
        #: Engine per validator for oracle re-execution: network.json's (chosen at `net up`;
        #: default ENGINE_CYCLE in turn). Changing it here lasts for this client only.
        self.validator_engines: dict[str, str] = dict(network.validator_engines)

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        path: str | os.PathLike[str],
        *,
        validators: int | None = None,
        faulty: str | None = None,
        policy: str | None = None,
        oracle_budget_s: float | None = None,
        validator_engines: str | None = None,
        **options: object,
    ) -> Client:
        """Create a network in ``path`` (default 4 validators), or reopen and re-verify the one
        already there (``validators``, when given, must then match its committee; ``policy``,
        a preset name or a JSON file (chain/policy.py), must match the saved one).
        ``oracle_budget_s`` and ``validator_engines`` (``"v1=native,..."``), when given, are
        saved in network.json (a new network's, or the reopened one's) for every later
        command."""
        path = Path(path)
        if (path / NETWORK_FILE).exists():
            network = Network.open(path, faulty=faulty, lazy=True)
            size = len(network.committee.members)
            if validators is not None and validators != size:
                network.close()
                raise UsageError(
                    f"the network in {path} has {size} validators; "
                    f"it cannot be reopened with {validators}"
                )
            if policy is not None and ResourcePolicy.resolve(policy) != network.policy:
                network.close()
                raise UsageError(
                    f"the network in {path} has the {network.policy.name} policy; "
                    f"it cannot be reopened with {policy}"
                )
            try:
                if oracle_budget_s is not None:
                    network.set_oracle_budget(oracle_budget_s, persist=True)
                if validator_engines is not None:
                    network.set_validator_engines(validator_engines, persist=True)
            except BaseException:
                network.close()
                raise
        else:
            network = Network.create(
                path,
                validators=4 if validators is None else validators,
                faulty=faulty,
                policy=policy,
                oracle_budget_s=oracle_budget_s,
                validator_engines=validator_engines,
            )
        return cls(network, **options)  # type: ignore[arg-type]

    @classmethod
    def open(cls, path: str | os.PathLike[str], **options: object) -> Client:
        """Open the network in ``path`` (NetworkNotFound if there is none), verifying what a
        command relies on (``Network.open(lazy=True)``; :meth:`verify` checks everything)."""
        faulty = options.pop("faulty", None)
        network = Network.open(Path(path), faulty=faulty, lazy=True)
        try:
            return cls(network, **options)  # type: ignore[arg-type]
        except BaseException:
            network.close()
            raise

    def close(self) -> None:
        """Free loaded models and close the database."""
        if self._service is not None:
            self._service.close()
            self._service = None
        self.network.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- network and chain ---------------------------------------------------------------------

    def refresh(self) -> bool:
        """Pick up blocks another process (another CLI call, a node service) committed.

        Returns True when something changed. Only the new blocks are verified and applied, from
        one snapshot of the database (see :meth:`Network.refresh`). Loaded models stay loaded:
        they are keyed by their certified hashes, so a changed registry simply selects another
        (or the same) model.
        """
        return self.network.refresh()

    @property
    def chain(self) -> Chain:
        """The chain this client acts on (``chain=`` when opened, else the wallet's default,
        else the network's first chain, "default")."""
        return self.network.chain(self.chain_name)

    # --- chains and their messages (docs/chain.md, "Microchains") -----------------------------

    def open_chain(self, name: str, owner: str | None = None) -> Chain:
        """A new chain named ``name``, owned by a new key the wallet keeps, or by ``owner`` (a
        hex public key: someone else's chain, whose blocks this wallet cannot propose)."""
        owner_key = _hex_id(owner, "owner key") if owner is not None else None
        return self.network.create_chain(name, owner_key)

    def inbox(self) -> list[IncomingBundle]:
        """The certified messages waiting for this chain's next block, bundle by bundle."""
        return self.chain.inbox()

    def process_inbox(self) -> Certificate | None:
        """Certify a block that takes this chain's inbox (None when it is empty). Only the
        chain's owner may (Unauthorized otherwise)."""
        chain = self.chain
        chain.owner_key()  # Unauthorized, one line, when the wallet holds no key for it
        return chain.process_inbox()

    @property
    def registry(self) -> ModelRegistryService:
        """The registry application's read-only queries over certified state."""
        return self.chain.application(APPLICATION_NAME)

    def status(self) -> NetworkStatus:
        return self.network.status()

    def verify(self, expect_head: ExpectedHead | None = None) -> VerifyReport:
        """Re-verify every stored chain (hash links, certificates, state), and that the chain
        still holds ``expect_head`` (a head recorded earlier), in one snapshot. A damaged
        stored blob is named with the model chunks it holds."""
        try:
            return self.network.verify(expect_head)
        except BlobCorrupted as exc:
            chunks = [
                f"chunk {index} of {m.entry.name} version {m.entry.version} {what}"
                for m in self.models()
                for what, file in (("weights", m.entry.weights), ("tokenizer", m.entry.tokenizer))
                for index, (blob, _) in enumerate(file.chunks)
                if blob == exc.blob
            ]
            if not chunks:
                raise
            raise BlobCorrupted(f"{exc} ({'; '.join(chunks)})", blob=exc.blob) from exc

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[CertifiedBlock]:
        return self.chain.blocks(start, end)

    # --- the registry's operations -------------------------------------------------------------

    def publish_model(
        self,
        name: str,
        *,
        weights: str | os.PathLike[str],
        tokenizer: str | os.PathLike[str] | None = None,
        version: str = "1",
        weights_urls: Sequence[str] = (),
        tokenizer_urls: Sequence[str] = (),
        description: str | None = None,
        license: str | None = None,
        progress: Callable[[str, int, int | None], None] | None = None,
        blobs: bool = False,
        check_urls: bool = True,
    ) -> PublishedModel:
        """Hash the weights and tokenizer, register them and wait for the certificate.

        With ``blobs``, the files (local paths) are stored on chain instead: cut into blobs
        within the network's resource policy, published in as many blocks as it needs, then
        registered with their manifests (docs/blobs.md); ``*_urls`` are optional then. A publish
        interrupted at any point resumes after the last certified chunk when run again.

        ``weights``/``tokenizer`` are local paths or http(s) URLs. A GGUF file (docs/models.md)
        carries its tokenizer: ``tokenizer`` is then None, and the entry's tokenizer is the
        file itself (same hash, same URLs; format ``gguf``). A URL is downloaded to be
        hashed (streamed through a temporary file, see :func:`download_file`) and is
        registered as where services fetch the bytes; with a local path, ``*_urls`` say where
        services will fetch them (the hash still comes from the file). ``progress(label, done,
        total)`` hears about each file ("hashing weights", "downloading tokenizer", ...).

        Nothing is proposed unless both files parse (service/engine/model_files.py): the
        checkpoint's header matches its size, the tokenizer walks to its end and has the model's
        vocabulary size (InvalidCheckpoint, InvalidTokenizer, VocabMismatch otherwise). Text
        that is not UTF-8 is refused (InvalidText) before any file is read.

        Before proposing, each URL the entry will certify is fetched under the client's fetch
        policy and must serve exactly the hashed bytes (edgechain/url_check.py; FetchError or
        HashMismatch otherwise, nothing proposed); ``check_urls=False`` skips that, for hosts
        that are not up yet. Publishing the same bytes again under a name and version that
        certified state already holds adds no block: the result has ``unchanged=True``.
        """
        sources, urls = (weights, tokenizer), (weights_urls, tokenizer_urls)
        check_publish_text(name, version, description, license, sources, urls)
        options = _CertifyOptions(description, license, check_urls, progress)
        if blobs:
            weights_ref, tokenizer_ref, publication, fmt = blob_file_refs(
                self.chain, self.network.policy, sources, urls, progress
            )
            options = dataclasses.replace(options, format=fmt)
            published = self._certify(name, version, weights_ref, tokenizer_ref, options)
            return dataclasses.replace(published, blobs=publication)
        weights_ref, tokenizer_ref, fmt = url_file_refs(sources, urls, self.fetch_policy, progress)
        options = dataclasses.replace(options, format=fmt)
        downloaded = frozenset(
            os.fspath(s) for s in sources if s is not None and is_url(os.fspath(s))
        )
        return self._certify(name, version, weights_ref, tokenizer_ref, options, downloaded)

    def _certify(
        self,
        name: str,
        version: str,
        weights: FileRef,
        tokenizer: FileRef,
        options: _CertifyOptions,
        downloaded: frozenset[str] = frozenset(),
    ) -> PublishedModel:
        """Register hashed files, unless certified state already holds the same bytes under
        that name and version; check their URLs first (``downloaded``: just hashed)."""
        current = self._registered(name, version)
        if current is not None and _same_bytes(current.entry.weights, weights) and _same_bytes(
            current.entry.tokenizer, tokenizer
        ):
            return PublishedModel(current, current.certificate, unchanged=True)
        # The contract's own rules first (names, URL syntax, sizes): no download for an
        # operation it would refuse anyway.
        registration = RegisterModel(
            name=name,
            version=version,
            format=options.format,
            weights=weights,
            tokenizer=tokenizer,
            description=options.description,
            license=options.license,
        )
        registration.validate()
        checks: list[UrlCheck] = []
        files = [("weights", weights)]
        if tokenizer != weights:  # a GGUF file is its own tokenizer: checked once
            files.append(("tokenizer", tokenizer))
        if options.check_urls:
            checks = check_urls(
                files,
                self.fetch_policy,
                already_checked=downloaded,
                progress=options.progress,
            )
        published = self.register_model(registration)
        return dataclasses.replace(published, checked_urls=tuple(checks))

    def _registered(self, name: str, version: str) -> CertifiedModel | None:
        """The active entry certified state holds for ``name`` ``version``, if any."""
        for model in self.models(include_retired=False):
            if (model.entry.name, model.entry.version) == (name, version):
                return model
        return None

    def publish_served(
        self,
        name: str,
        *,
        weights: str | os.PathLike[str],
        tokenizer: str | os.PathLike[str],
        server: FileServer,
        **options: typing.Any,
    ) -> PublishedModel:
        """:meth:`publish_model` for two local files that ``server`` serves under their file
        names (a loopback server over their directory, as in the examples and benchmarks)."""
        return self.publish_model(
            name,
            weights=weights,
            tokenizer=tokenizer,
            weights_urls=[server.url(Path(weights).name)],
            tokenizer_urls=[server.url(Path(tokenizer).name)],
            **options,
        )

    def register_model(self, registration: RegisterModel) -> PublishedModel:
        """Register already-hashed files: propose ``registration`` and wait for its certificate
        (what ``publish_model`` does once it has the hashes; the node service's
        ``publishModel`` mutation calls this directly)."""
        app_id = self.chain.app_id(APPLICATION_NAME)
        certificate = self.chain.execute(app_id, registration)
        return PublishedModel(
            self.registry.query_model(registration.name, registration.version), certificate
        )

    def follow_registry(self, chain: str) -> Certificate:
        """Make this chain's registry follow the registry of ``chain`` (name, id or prefix):
        once that chain has taken the request from its inbox and this one the models it sends,
        every model certified there is certified here too, and ``generate`` on this chain
        serves it (docs/chain.md, "Microchains")."""
        from edgechain.contract.registry import FollowRegistry

        source = self.network.chain(chain)
        app_id = self.chain.app_id(APPLICATION_NAME)
        return self.chain.execute(app_id, FollowRegistry(source.id.hex()))

    def retire_model(self, name: str, version: str) -> Certificate:
        """Retire a model version; services refuse it from the next query on."""
        app_id = self.chain.app_id(APPLICATION_NAME)
        return self.chain.execute(app_id, RetireModel(name=name, version=version))

    def weights_format(self, model: CertifiedModel) -> str | None:
        """``"f32"`` or ``"int8 (Q8_0, group size N)"``, read from the header of the weights
        when this machine holds them (the content cache, or the chain's blobs); None when it
        does not (the registry records hashes, not formats: nothing is downloaded to tell).
        A GGUF entry says so (its format is certified; its tensor types are in its header)."""
        if model.entry.format == "gguf":
            return "GGUF (weights and tokenizer in one file)"
        weights = model.entry.weights
        head: bytes | None = None
        if weights.chunks:
            head = self.network.read_blob(weights.chunks[0][0])
        else:
            cached = object_path(self.cache_dir, weights.blake3)
            if cached.is_file():
                with cached.open("rb") as f:
                    head = f.read(Q8_HEADER_BYTES)
        if head is None:
            return None
        try:
            header = parse_checkpoint_header(head[:Q8_HEADER_BYTES], None)
        except InputError:
            return None
        if header.group_size is None:
            return "f32"
        return f"int8 (Q8_0, group size {header.group_size})"

    def models(self, include_retired: bool = True) -> list[CertifiedModel]:
        return self.registry.list_models(include_retired=include_retired)

    def model(self, name: str, version: str | None = None) -> CertifiedModel:
        return self.registry.query_model(name, version)

    # --- the service -----------------------------------------------------------------------------

    @property
    def service(self) -> ModelService:
        """The registry's service runtime (created on first use; models stay loaded)."""
        if self._service is None:
            self._service = ModelService(
                self.registry,
                cache_dir=self.cache_dir,
                engine=self._engine,
                fetch_policy=self.fetch_policy,
                blobs=self.network,
            )
        return self._service

    def generate(
        self, query: GenerateQuery, *, progress: DownloadProgress | None = None
    ) -> QueryStream:
        """Run a ``generate`` query on the service; see :meth:`ModelService.generate`.
        ``progress(label, done, total)`` hears about the model's download, if one is needed."""
        return self.service.generate(query, progress=progress)

    def prepare_generation(self, query: GenerateQuery) -> PendingGeneration:
        """Resolve ``query`` against certified state (quick: the model entry, its certificate,
        the seed); :meth:`PendingGeneration.start` then does the slow part, without this
        client (a caller sharing the client between threads holds its lock only here)."""
        return PendingGeneration(self.service.prepare(query), self.service)

    def batching(self) -> dict[str, int]:
        """Continuous batching so far (see :meth:`ModelService.batching`)."""
        return self.service.batching()

    # --- applications users write (edgechain.sdk; edgechain/user_applications.py) -------------

    def publish_module(self, path: str | os.PathLike[str]) -> PublishedModule:
        """Publish the application project at ``path`` (its package directory) as a module:
        checked to load as validators will load it, its files as blobs, its id certified."""

        from edgechain import user_applications  # the SDK, imported when first used

        return user_applications.publish_module(self, path)

    def create_application(
        self, module: bytes | str, parameters: Any = None, argument: Any = None
    ) -> CreatedApp:
        """Create an application from a published module (id as bytes or hex)."""
        module_id = module if isinstance(module, bytes) else _hex_id(module, "module id")

        from edgechain import user_applications  # the SDK, imported when first used

        return user_applications.create_application(self, module_id, parameters, argument)

    def applications(self, chain: str | None = None) -> list[CreatedApplication]:
        """The applications this chain (or ``chain``) knows, oldest first: created there, or
        learnt from a message."""

        from edgechain import user_applications  # the SDK, imported when first used

        return user_applications.applications(self, self._chain_named(chain))

    def application(self, app: str | bytes, chain: str | None = None) -> CreatedApplication:
        """A created application by id, or a unique prefix of its hex id."""
        text = app.hex() if isinstance(app, bytes) else app

        from edgechain import user_applications  # the SDK, imported when first used

        return user_applications.find_application(self, text, self._chain_named(chain))

    def call_application(
        self, app: str | bytes, operation: Any, chain: str | None = None
    ) -> tuple[Any, Certificate]:
        """Propose ``operation`` (``{"Name": {fields}}``) to a created application: its
        response and the block's certificate. An application created on another chain is
        brought to this one by the same block (its state here starts empty)."""

        from edgechain import user_applications  # the SDK, imported when first used

        on = self._chain_named(chain)
        text = app.hex() if isinstance(app, bytes) else app
        found = user_applications.find_application(self, text, on, elsewhere=True)
        return user_applications.call_application(self, found, operation, on)

    def query_application(
        self, app: str | bytes, request: dict[str, Any], chain: str | None = None
    ) -> dict[str, Any]:
        """A GraphQL request to a created application's service (mutations' operations are
        proposed afterwards)."""

        from edgechain import user_applications  # the SDK, imported when first used

        on = self._chain_named(chain)
        return user_applications.query_application(
            self, self.application(app, chain), request, on
        )

    def _chain_named(self, chain: str | None) -> Chain:
        return self.chain if chain is None else self.network.chain(chain)

    # --- the story book ----------------------------------------------------------------------

    @property
    def story_book(self) -> StoryBookService:
        """The story book application's read-only queries over certified state."""
        return self.chain.application(STORY_BOOK)

    def stories(self, owner: str | None = None) -> list[Story]:
        """Every story in mint order, or those of ``owner``: a public key (hex) or a unique
        prefix of one (``story list`` prints 16-digit prefixes); InvalidParameter for text
        that is not hex or a prefix several keys share."""
        if owner is None:
            return self.story_book.stories()
        return self.story_book.stories(self.resolve_owner(owner))

    def resolve_owner(self, owner: str) -> str:
        """The full public key (hex) ``owner`` names: the key itself, or the one key among the
        chain owner's and the stories' owners that starts with it (a prefix no known key has is
        returned as given: that owner has nothing here)."""
        text = owner.strip().lower()
        if not 1 <= len(text) <= 64 or any(c not in "0123456789abcdef" for c in text):
            raise InvalidParameter(
                f"owner {owner!r} is not a public key: give its 64 hex digits or a unique prefix"
            )
        if len(text) == 64:
            return text
        known = {self.chain.owner.hex(), *(s.owner for s in self.story_book.stories())}
        matches = sorted(key for key in known if key.startswith(text))
        if len(matches) > 1:
            shown = ", ".join(key[:16] for key in matches)
            raise InvalidParameter(
                f"owner prefix {text} names {len(matches)} keys ({shown}): give more digits"
            )
        return matches[0] if matches else text

    def story(self, story_id: int) -> Story:
        return self.story_book.story(story_id)

    def mint_story(
        self, query: GenerateQuery, *, oracle_budget_s: float | None = None
    ) -> MintedStory:
        """Generate a story with a certified model and mint it.

        The generation runs here first (the proposer's oracle call, within the block's oracle
        budget: OracleBudgetExceeded, exit 5, past it); the block records its response and
        every validator re-executes it with its own engine (``validator_engines``) before
        voting. Without a quorum of agreeing validators nothing is stored (QuorumNotReached,
        exit 4). The three steps are :meth:`prepare_mint`, :meth:`PendingMint.generate` and
        :meth:`certify_mint`; a caller that shares this client between threads (the node) runs
        the generation without holding the client.
        """
        pending = self.prepare_mint(query, oracle_budget_s=oracle_budget_s)
        return self.certify_mint(pending.generate())

    def prepare_mint(
        self, query: GenerateQuery, *, oracle_budget_s: float | None = None
    ) -> PendingMint:
        """Resolve a mint's query against certified state (quick): the model version, the
        seed and the block's oracle budget (``oracle_budget_s``, if given, becomes it)."""
        self._install_oracles()
        return prepare_mint(self.network, self.registry, self.service, query, oracle_budget_s)

    def certify_mint(self, generated: GeneratedStory) -> MintedStory:
        """Propose the MintStory block recording ``generated`` (validators re-execute it).

        Touches the client only through its chain, so it may run while other threads refresh
        and read the client (the node does; see docs/chain.md, "Concurrency")."""
        return certify_mint(self.chain, generated)

    def transfer_story(self, story_id: int, owner: str, chain: str | None = None) -> Certificate:
        """Give story ``story_id`` to ``owner`` (a public key, hex); signed by the chain owner,
        who must own it (Unauthorized, exit 5, otherwise). With ``chain`` (another chain's name
        or id), the story moves there: it is that chain's once it takes its inbox, or comes
        back if that chain's registry does not certify the story's model."""
        from edgechain.contract.story_book import Transfer

        target = None if chain is None else self.network.chain(chain).id.hex()
        operation = Transfer(story=story_id, owner=owner.lower(), chain=target)
        return self.chain.execute(self.chain.app_id(STORY_BOOK), operation)

    def _install_oracles(self) -> None:
        """Give every validator its oracle (its engine, the shared cache), once."""
        if self._oracles_installed:
            return
        install_oracles(
            self.network,
            self.registry,
            self.validator_engines,
            cache_dir=self.cache_dir,
            fetch_policy=self.fetch_policy,
            blobs=self.network,
        )
        self._oracles_installed = True
