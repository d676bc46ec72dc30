"""Knowledge tracing on the box: tracing answers into mastery, recommending what to practise,
watching the model, and the insight teachers see."""
