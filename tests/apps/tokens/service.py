"""The tokens service: balances over certified state."""

import strawberry
from strawberry.types import Info

from edgechain.sdk import Service, service_of

from .state import TokensState


@strawberry.type
class Query:
    @strawberry.field
    def balance(self, info: Info) -> int:
        return service_of(info).state.balance.get()

    @strawberry.field
    def received(self, info: Info) -> list[int]:
        return service_of(info).state.received.read()

    @strawberry.field
    def bounced(self, info: Info) -> int:
        return service_of(info).state.bounced.get()

    @strawberry.field(description="Mints seen on followed chains: chain id, index, amount.")
    def followed(self, info: Info) -> list[list[str]]:
        seen = service_of(info).state.followed.read()
        return [[f.chain_id, str(f.index), str(f.value)] for f in seen]


class TokensService(Service):
    state_type = TokensState
    query = Query
