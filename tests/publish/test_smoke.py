"""A first end-to-end pass: publish reaches a subscriber through real sockets."""

from tests.conftest import HubServer


async def test_published_event_reaches_subscriber(backplane: str, hub: HubServer) -> None:
    """The simplest promise of the hub: subscribe, publish, receive the same data and id."""
    stream = await hub.subscribe("/channels/orders/events")
    receipt = await hub.publish("orders", {"pct": 40}, event="progress")
    message = await stream.next()
    assert message.event == "progress"
    assert message.data == '{"pct":40}'
    assert message.id == receipt["id"]
    assert receipt["channel"] == "orders" and receipt["subscribers"] == 1
    await stream.close()
