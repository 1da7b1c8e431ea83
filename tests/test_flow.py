"""Flow control: the outbox in front of a Twisted transport, as daphne
leaves it after the upgrade (the HTTP channel that read the handshake still
registered as its producer)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel

from executions import flow
from executions.flow import Outbox, daphne_connection


def upgraded_transport() -> tuple[StringTransport, HTTPChannel]:
    transport = StringTransport()
    channel = HTTPChannel()
    channel.makeConnection(transport)  # registers itself as the producer
    return transport, channel


def test_outbox_takes_the_producer_slot_from_the_http_channel():
    transport, channel = upgraded_transport()

    outbox = Outbox(SimpleNamespace(transport=transport), limit=100)

    assert outbox.tracking
    assert transport.producer is outbox
    assert outbox.previous is channel


def test_outbox_passes_the_transports_calls_on_to_the_http_channel():
    transport, _ = upgraded_transport()
    outbox = Outbox(SimpleNamespace(transport=transport), limit=100)

    outbox.pauseProducing()
    paused = transport.producerState
    outbox.resumeProducing()
    resumed = transport.producerState

    # The channel pauses reading from a client it cannot write to, as before.
    assert (paused, resumed) == ("paused", "producing")


def test_outbox_counts_only_while_the_transport_is_paused():
    transport, _ = upgraded_transport()
    outbox = Outbox(SimpleNamespace(transport=transport), limit=100)

    outbox.sent(1000)
    fits_unpaused = outbox.fits(1000)
    outbox.pauseProducing()
    outbox.sent(60)
    fits_within, fits_beyond = outbox.fits(40), outbox.fits(41)
    outbox.resumeProducing()

    assert fits_unpaused
    assert (fits_within, fits_beyond) == (True, False)
    assert outbox.fits(1000)


def test_outbox_is_off_under_another_server():
    outbox = Outbox(daphne_connection(lambda message: None), limit=100)

    assert not outbox.tracking
    assert outbox.fits(10**9)


def test_outbox_says_when_it_cannot_take_the_slot(caplog):
    caplog.set_level(logging.WARNING, logger="executions.flow")
    flow._cannot_track.cache_clear()  # it says so once per process

    outbox = Outbox(SimpleNamespace(transport=object()), limit=100)

    assert not outbox.tracking
    assert "cannot bound what the server holds" in caplog.text
