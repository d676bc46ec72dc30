"""The school's tutor: grounding answers in the lessons, the safety guards, the conversation."""
