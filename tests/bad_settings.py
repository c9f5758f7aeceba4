"""Bad request settings, one table for every engine's tests (the vLLM server's HTTP 400s, the SGLang
processor's warnings, the client helpers): each row is a request's flat keys and the key its error
has to name.
"""

#: Refused from the settings alone (types, ranges, unknown keys, refused combinations).
BAD_WITHOUT_TOKENIZER = [
    ({"nowait": "perhaps"}, "nowait"),
    ({"nowait_keywords": []}, "nowait_keywords"),
    ({"nowait_scope": "sometimes"}, "nowait_scope"),
    ({"nowait_keyword": ["wait"]}, "nowait_keyword"),
    ({"cyclic_amplitude": -2}, "cyclic_amplitude"),
    ({"cyclic_period": 0}, "cyclic_period"),
    ({"cyclic_shift": "later"}, "cyclic_shift"),
    ({"cyclic_start": 1.5}, "cyclic_start"),
    ({"cyclic_start": 9, "cyclic_end": 3}, "cyclic_end"),
    ({"cyclic_scope": "x"}, "cyclic_scope"),
    ({"budget_min": -1}, "budget_min"),
    ({"budget_max": 2.5}, "budget_max"),
    ({"budget_min": 9, "budget_max": 3}, "budget_min"),
    ({"budget": 1}, "budget"),
    ({"budget_limit": 1}, "budget_limit"),
    ({"gated_alpha": "lots"}, "gated_alpha"),
    ({"gated_beta": -1}, "gated_beta"),
    ({"gated_threshold": -0.5}, "gated_threshold"),
    ({"gated_triggers": []}, "gated_triggers"),
    ({"gated_scope": "x"}, "gated_scope"),
    ({"gated_window": 4}, "gated_window"),
    ({"thinkbrake_tau": -0.1}, "thinkbrake_tau"),
    ({"thinkbrake_boundary": []}, "thinkbrake_boundary"),
    ({"thinkbrake_temperature": 0}, "thinkbrake_temperature"),
    ({"thinkbrake_boundary": "x"}, "thinkbrake_tau"),  # required
    ({"thinkbrake_tau": 1, "thinkbrake_boundary": "a\\q"}, "thinkbrake_boundary"),  # not an escape
    ({"deepconf_threshold": 0}, "deepconf_threshold"),
    ({"deepconf_window": 0}, "deepconf_window"),
    ({"deepconf_topk": 5000}, "deepconf_topk"),
    ({"deepconf_window": 8}, "deepconf_threshold"),  # required
    # issue 21 (the flat keys of affirm, alphaone, inject, nothinking)
    ({"affirm_tau": 1.5}, "affirm_tau"),
    ({"affirm_words": []}, "affirm_words"),
    ({"affirm_scope": "x"}, "affirm_scope"),
    ({"alphaone_moment": -3}, "alphaone_moment"),
    ({"alphaone_alpha": "lots"}, "alphaone_alpha"),
    ({"alphaone_think_tokens": 0}, "alphaone_think_tokens"),
    ({"alphaone_seed": -1}, "alphaone_seed"),
    ({"alphaone_temperature": -1}, "alphaone_temperature"),
    ({"alphaone": 2}, "alphaone"),
    ({"inject_text": 5}, "inject_text"),
    ({"inject": 1}, "inject"),
    ({"nothinking": 2}, "nothinking"),
    ({"nothinking_txt": "a"}, "nothinking_txt"),
    ({"alphaone": 1, "affirm": 1}, "alphaone"),  # a refused combination
]

#: Refused only once the tokenizer is known (a word that matches no token, a special token in a text).
BAD_WITH_TOKENIZER = [
    ({"affirm_words": ["zzqqxxjj"]}, "affirm_words"),  # matches no token: needs the tokenizer
    ({"inject_text": "ok <|im_end|>"}, "inject_text"),
    ({"alphaone_word": "<think>"}, "alphaone_word"),
    ({"nowait_keywords": ["zzqqxxjj"]}, "nowait_keywords"),
    ({"cyclic_words": ["NotAPieceAnywhere123"]}, "cyclic_words"),
    ({"budget_word": "<|im_end|>", "budget_min": 4}, "budget_word"),
]

#: Every bad row.
BAD = BAD_WITHOUT_TOKENIZER + BAD_WITH_TOKENIZER
