"""run.c's chat mode over a :class:`LoadedModel`: Llama 2's ``[INST]`` template, turn by turn.

run.c renders each user turn as ``[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST]`` (the
system prompt only in the first turn, and only when it is not empty), else ``[INST] {user}
[/INST]``, encodes it with BOS, and lets the assistant answer until it samples EOS; the
conversation ends when ``steps`` positions are used.

The engine runs one prompt per session, so the dialogue is carried as text: turn ``k``'s prompt
is every earlier turn and answer followed by turn ``k``'s rendering (joined by a space, which
is what run.c's encoder puts before each turn). The first turn's tokens are run.c's exactly
(BOS, then the rendered template); later turns differ from run.c's only in the EOS/BOS pair
run.c places between turns. The position limit (``max_positions``) covers the whole dialogue,
as run.c's ``steps`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgechain.service.engine.base import Generation, GenerationParams, LoadedModel, StopReason

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
    #: The dialogue so far as text: rendered turns and the assistant's answers.
    dialogue: list[str] = field(default_factory=list)
    _last: Generation | None = None

    @property
    def over(self) -> bool:
        """True once an answer stopped for any reason but EOS (the positions are used up)."""
        last = self._last
        return last is not None and last.stop_reason not in (None, StopReason.END_OF_SEQUENCE)

    def reply(self, user: str) -> Generation:
        """Start the answer to ``user``; iterate the returned generation to stream it."""
        if self._last is not None:
            self.dialogue.append(self._last.text)
        turn = render_turn(user, self.system if not self.dialogue else "")
        self.dialogue.append((" " if self.dialogue else "") + turn)
        self._last = self.model.generate("".join(self.dialogue), self.params)
        return self._last
