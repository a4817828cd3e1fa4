"""LangChain both ways: an llmrec ``LLM`` as a langchain-core chat model, and any LangChain chat
model as an llmrec ``LLM`` backend."""
from __future__ import annotations

from typing import Any, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from llmrec.llm.base import LLM, Generation, GenerationParams, Prompt, to_messages

_ROLE_OF = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


def _to_llmrec(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(messages):
        role = {"system": "system", "human": "user", "ai": "assistant"}.get(m.type)
        if role is None:
            raise ValueError(f"messages[{i}]: message type {m.type!r} is not supported (system, human, ai)")
        content = m.content if isinstance(m.content, str) else "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in m.content
        )
        out.append({"role": role, "content": content})
    return out


class LLMRecChatModel(BaseChatModel):
    """Use any llmrec backend inside LangChain (``.invoke``, ``.batch``, chains, agents)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    llm: Any
    params: GenerationParams = GenerationParams()

    @property
    def _llm_type(self) -> str:
        return "llmrec"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if kwargs:  # LangChain's signature requires **kwargs; we accept none silently
            raise TypeError(f"unsupported generation arguments: {sorted(kwargs)}")
        params = self.params if not stop else self.params.model_copy(update={"stop": list(stop)})
        g = self.llm.generate([_to_llmrec(messages)], params)[0]
        msg = AIMessage(
            content=g.text,
            usage_metadata={
                "input_tokens": g.prompt_tokens,
                "output_tokens": g.completion_tokens,
                "total_tokens": g.prompt_tokens + g.completion_tokens,
            },
            response_metadata={"finish_reason": g.finish_reason, "model": self.llm.model_id},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def batch_generate(self, conversations: Sequence[Sequence[BaseMessage]]) -> list[AIMessage]:
        """One batched llmrec call for many conversations (LangChain's ``batch`` runs them one by one)."""
        gens = self.llm.generate([_to_llmrec(c) for c in conversations], self.params)
        return [AIMessage(content=g.text) for g in gens]


class LangChainLLM:
    """Any LangChain chat model as an llmrec ``LLM`` (e.g. ``ChatOpenAI``, ``ChatOllama``)."""

    def __init__(self, chat_model: BaseChatModel, model_id: str | None = None, max_concurrency: int = 8) -> None:
        self.chat_model = chat_model
        self._model_id = model_id or f"langchain:{getattr(chat_model, 'model_name', None) or chat_model._llm_type}"
        self.max_concurrency = max_concurrency

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        convs = [[_ROLE_OF[m["role"]](content=m["content"]) for m in to_messages(p, i)] for i, p in enumerate(prompts)]
        runnable = self.chat_model.bind(stop=list(params.stop)) if params.stop else self.chat_model
        outs = runnable.batch(convs, config={"max_concurrency": self.max_concurrency})
        gens = []
        for o in outs:
            usage = getattr(o, "usage_metadata", None) or {}
            text = o.content if isinstance(o.content, str) else str(o.content)
            gens.append(
                Generation(
                    text=text,
                    prompt_tokens=int(usage.get("input_tokens", 0)),
                    completion_tokens=int(usage.get("output_tokens", 0)),
                    finish_reason=str((o.response_metadata or {}).get("finish_reason", "stop")),
                )
            )
        return gens


def as_langchain(llm: LLM, params: GenerationParams | None = None) -> LLMRecChatModel:
    """An llmrec ``LLM`` as a LangChain chat model."""
    return LLMRecChatModel(llm=llm, params=params or GenerationParams())
