"""Path-abandonment analysis: thoughts, switches, the underthinking (UT) score, and thought judges.

`trace` segments saved responses, `live` follows a token or text stream as it arrives, `judge` and
`candidates` decide which thoughts were on track, `signals` turns log-probabilities into entropies.
Importing this package imports no torch, transformers or vLLM; the in-`generate` detector
(`detector`, torch) is imported only through `tip_decode.hf.AbandonmentDetector`.
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
from tip_decode.analysis.live import LiveMonitor, LiveSwitchEvent
from tip_decode.analysis.signals import entropy_from_logprobs, entropy_from_top_logprobs, token_id_of, top_logprob_signals
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
    "LiveMonitor",
    "LiveSwitchEvent",
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
    "token_id_of",
    "top_logprob_signals",
    "underthinking",
]
