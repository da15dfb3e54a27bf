import pytest

from qwenchat.conversation.file import conversation_from_dict, conversation_to_dict
from qwenchat.conversation.model import DEFAULT_SYSTEM, Conversation, ConversationFormatError


def test_to_chat_and_round_trip():
    c = Conversation()
    c.add_user("hi")
    c.add_assistant("hel", interrupted=True)
    assert c.to_chat() == [
        {"role": "system", "content": DEFAULT_SYSTEM},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hel"},
    ]
    again = conversation_from_dict(conversation_to_dict(c))
    assert again == c and again.messages[1].interrupted


def test_no_system():
    c = Conversation(system=None)
    c.add_user("x")
    assert c.to_chat() == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    "data,msg",
    [
        ([], "JSON object"),
        ({"messages": []}, "version"),
        ({"version": 99, "messages": []}, "newer"),
        ({"version": 1, "messages": {}}, "must be a list"),
        ({"version": 1, "messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"version": 1, "messages": [{"role": "user", "content": 3}]}, "no text"),
        ({"version": 1, "system": 5, "messages": []}, "system"),
        ({"version": True, "messages": []}, "version"),
    ],
)
def test_from_dict_rejects(data, msg):
    with pytest.raises(ConversationFormatError) as info:
        conversation_from_dict(data)
    assert msg in str(info.value)
