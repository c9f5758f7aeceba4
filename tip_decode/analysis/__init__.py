"""Path-abandonment analysis: thoughts, switches, the underthinking (UT) score, and thought judges.

Backend-neutral: nothing here imports torch, transformers or vLLM. The live monitor is
`tip_decode.live`, the in-`generate` detector `tip_decode.hf.AbandonmentDetector`.
"""

from tip_decode.analysis.candidates import CANDIDATE_SOURCES, extract_candidates
from tip_decode.analysis.judge import (
    AnswerMatchJudge,
    AnyJudge,
    JudgeRequest,
    LLMJudge,
    ThoughtJudge,
    Verdict,
    parse_judge_reply,
)
from tip_decode.analysis.signals import entropy_from_logprobs, entropy_from_top_logprobs, top_logprob_signals
from tip_decode.analysis.trace import (
    ResponseAnalysis,
    Switch,
    Thought,
    aggregate,
    analyze_response,
    resolve_prompt_open,
    underthinking,
)

__all__ = [
    "CANDIDATE_SOURCES",
    "AnswerMatchJudge",
    "AnyJudge",
    "JudgeRequest",
    "LLMJudge",
    "ResponseAnalysis",
    "Switch",
    "Thought",
    "ThoughtJudge",
    "Verdict",
    "aggregate",
    "analyze_response",
    "entropy_from_logprobs",
    "entropy_from_top_logprobs",
    "extract_candidates",
    "parse_judge_reply",
    "resolve_prompt_open",
    "top_logprob_signals",
    "underthinking",
]
