"""run.c's chat mode over a :class:`LoadedModel`: Llama 2's ``[INST]`` template, turn by turn.

run.c renders each user turn as ``[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST]`` (the
system prompt only in the first turn, and only when it is not empty), else ``[INST] {user}
[/INST]``, encodes it with BOS, and lets the assistant answer until it samples its end token;
the conversation ends when ``steps`` positions are used.

The session keeps its KV cache across turns (:meth:`LoadedModel.chat`,
:meth:`Generation.follow_up`): each turn feeds only the answer's end token and the new turn, as
run.c does, so the tokens are run.c's; sampled answers too, since a random draw is spent at
every forced position as run.c's loop samples there. One difference: run.c's chat ends an
answer only at EOS (2), the engine at any end token (BOS too, where llama2.c's ``generate``
stops), which matters only for models that are not chat models.

With ``templated`` (a GGUF file), the turns are :class:`ChatMessage` s rendered by the model's
own chat template (``tokenizer.chat_template``) instead: the system prompt as the first
message when not empty, each user turn as a ``user`` message, each answer as the
``assistant``'s (docs/models.md, "Chat templates").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgechain.service.engine.base import (
    ChatMessage,
    Generation,
    GenerationParams,
    LoadedModel,
    StopReason,
)

__all__ = ["ChatSession", "render_turn"]

SYSTEM_TEMPLATE = "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]"
USER_TEMPLATE = "[INST] {user} [/INST]"


def render_turn(user: str, system: str = "") -> str:
    """One user turn in run.c's Llama 2 chat template (``system`` for the first turn only)."""
    if system:
        return SYSTEM_TEMPLATE.format(system=system, user=user)
    return USER_TEMPLATE.format(user=user)


@dataclass
class ChatSession:
    """A conversation with ``model``: :meth:`reply` starts the assistant's answer to a turn."""

    model: LoadedModel
    params: GenerationParams
    system: str = ""
    #: Whether the model's own chat template renders the turns (a GGUF file's).
    templated: bool = False
    #: The dialogue so far as text: rendered turns and the assistant's answers (each turn
    #: reaches the model once; the session holds the rest in its KV cache).
    dialogue: list[str] = field(default_factory=list)
    _last: Generation | None = None

    @property
    def over(self) -> bool:
        """True once an answer stopped for any reason but its end token (the positions are
        used up, or it was cancelled)."""
        last = self._last
        return last is not None and last.stop_reason not in (None, StopReason.END_OF_SEQUENCE)

    def reply(self, user: str) -> Generation:
        """Start the answer to ``user``; iterate the returned generation to stream it. A turn
        that does not fit the positions left raises ContextFull (PromptTooLong for the first
        turn) and changes nothing."""
        if self.templated:
            return self._reply_in_template(user)
        if self._last is None:
            turn = render_turn(user, self.system)
            self._last = self.model.chat(turn, self.params)
        else:
            turn = render_turn(user)
            previous = self._last
            self._last = previous.follow_up(turn)
            self.dialogue.append(previous.text)
        self.dialogue.append(turn)
        return self._last

    def _reply_in_template(self, user: str) -> Generation:
        message = ChatMessage("user", user)
        if self._last is None:
            first = [ChatMessage("system", self.system)] if self.system else []
            self._last = self.model.chat([*first, message], self.params)
            self.dialogue.extend(m.content for m in [*first, message])
        else:
            previous = self._last
            self._last = previous.follow_up([message])
            self.dialogue.extend([previous.text, user])
        return self._last

    def close(self) -> None:
        """End the conversation and free its session."""
        if self._last is not None:
            self._last.cancel()
