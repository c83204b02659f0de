"""Model providers: each implements `agentwire_llm.model.ModelProvider`."""
