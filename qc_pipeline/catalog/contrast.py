"""Was a contrast agent given: the agent tags of one object, placeholders excluded.

One place for CT and MR. Anonymisers overwrite ContrastBolusAgent (0018,0010) with a placeholder
("ANONYMIZED", "REMOVED", "XXX"), and consoles write "NONE" or "0" when nothing was injected:
neither is contrast. The placeholder words are data (``lexicon.yaml``,
``contrast_agent_placeholders``).
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset

from qc_pipeline.catalog.items import Vocabulary
from qc_pipeline.io.geometry import first_item, frame_functional_group, header_text

logger = logging.getLogger(__name__)


def is_placeholder(value: str, vocabulary: Vocabulary) -> bool:
    """True when ``value`` of an agent tag says no agent: empty, a listed placeholder, or a mask
    made only of the lexicon's mask characters (``XXXX``, ``***``)."""
    placeholders = vocabulary.lexicon.contrast_agent_placeholders
    word = value.strip().strip("\x00").strip().upper()
    if not word:
        return True
    if word in {v.upper() for v in placeholders.values}:
        return True
    mask = set(placeholders.mask_characters.upper())
    return bool(mask) and set(word) <= mask


def contrast_agent(ds: Dataset, vocabulary: Vocabulary) -> str | None:
    """What says an agent was given to the object ``ds``, as readable evidence; None when nothing does.

    ContrastBolusAgent (0018,0010) unless it holds a placeholder; then ContrastBolusAgentSequence
    (0018,0012); then, for an enhanced object, ContrastBolusAgentAdministered (0018,9361) YES in a
    frame's ContrastBolusUsageSequence (0018,9341). Never raises on garbled values.
    """
    agent = header_text(ds, "ContrastBolusAgent")
    if agent is not None and not is_placeholder(agent, vocabulary):
        return f"ContrastBolusAgent (0018,0010) {agent!r}"
    item = first_item(ds, "ContrastBolusAgentSequence")
    if item is not None:
        meaning = header_text(item, "CodeMeaning")
        if meaning is None or not is_placeholder(meaning, vocabulary):
            return f"ContrastBolusAgentSequence (0018,0012) {meaning or 'present'}"
    for usage in frame_functional_group(ds, "ContrastBolusUsageSequence"):
        if (header_text(usage, "ContrastBolusAgentAdministered") or "").upper() == "YES":
            return "ContrastBolusUsageSequence (0018,9341): ContrastBolusAgentAdministered (0018,9361) YES"
    return None
