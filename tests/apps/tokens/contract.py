"""The tokens contract: transfers leave as messages, credits arrive as messages."""

from edgechain.sdk import Contract, OperationRejected, StreamUpdate

from . import ABI, Credit, Follow, Mint, Transfer
from .state import TokensState


class TokensContract(Contract):
    abi = ABI
    state_type = TokensState

    def execute_operation(self, operation: Mint | Transfer | Follow) -> int:
        if isinstance(operation, Mint):
            self.state.balance.set(self.state.balance.get() + operation.amount)
            self.runtime.emit("mints", operation.amount)
            return self.state.balance.get()
        if isinstance(operation, Follow):
            self.runtime.subscribe_to_events(operation.chain, "mints")
            return self.state.balance.get()
        if not 0 < operation.amount <= self.state.balance.get():
            raise OperationRejected(f"cannot send {operation.amount}")
        self.state.balance.set(self.state.balance.get() - operation.amount)
        self.runtime.send_message(
            operation.to_chain, Credit(operation.amount), tracked=operation.tracked,
            authenticated=True,
        )
        return self.state.balance.get()

    def execute_message(self, message: Credit) -> None:
        if self.runtime.message_is_bouncing:
            self.state.balance.set(self.state.balance.get() + message.amount)
            self.state.bounced.set(self.state.bounced.get() + 1)
            return
        if message.amount > self.runtime.application_parameters.max_credit:
            raise OperationRejected(f"credit {message.amount} refused")
        self.state.balance.set(self.state.balance.get() + message.amount)
        self.state.received.push(message.amount)
        self.state.last_sender.set(self.runtime.authenticated_signer or "")

    def process_streams(self, updates: list[StreamUpdate]) -> None:
        for update in updates:
            self.state.followed.push(update)
