"""The scheduling agent: multi-turn conversations with patients that book, reschedule and cancel
through the tools service and only ever confirm what the EHR verifiably holds."""
