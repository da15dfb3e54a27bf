"""The tool and the question that the demo model is asked to call it with: shared by tests/tools/test_demo.py
(greedy, one try) and bench/toolcall_rate.py (the rate over sampled tries), so both measure the same thing."""

from __future__ import annotations

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city's name"}},
            "required": ["city"],
        },
    },
}
WEATHER_PROMPT = "What is the weather in Paris right now?"
