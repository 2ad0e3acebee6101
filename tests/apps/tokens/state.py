"""The tokens application's state on each chain."""

from edgechain.sdk import LogView, RegisterView, RootView, StreamUpdate


class TokensState(RootView):
    balance = RegisterView(int, default=0)
    received = LogView(int)
    bounced = RegisterView(int, default=0)
    last_sender = RegisterView(str, default="")
    #: The mints seen on followed chains (each update's value is the amount minted).
    followed = LogView(StreamUpdate)
