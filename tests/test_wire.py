"""The wire format alone (no cluster): round trips, refusals, and hostile bytes."""

from __future__ import annotations

import os
import pickle

import msgpack
import numpy as np
import pytest
from distributed.protocol.serialize import Serialized
from hypothesis import given, settings
from hypothesis import strategies as st

from asip import MessageError
from asip._wire import (
    Limits,
    decode_message,
    decode_targets,
    encode_message,
    local_item,
    pack_payload,
    unpack_payload,
    wire_item,
)

LIMITS = Limits(max_bytes=1 << 20, max_keys=16, inline_bytes=1024)


def roundtrip(payload, limits=LIMITS, via="wire"):
    enc = encode_message(payload, run_id="r1", sender=2, incarnation=1, seq=7, limits=limits)
    item = wire_item(enc, limits) if via == "wire" else local_item(enc)
    # what distributed hands the receiver when it does not deserialize: bytes or raw frames
    item = [x if not isinstance(x, Serialized) else Serialized(x.header, [bytes(f) for f in x.frames])
            for x in item]
    return decode_message(item, run_id="r1", n_partitions=4, limits=limits)


@pytest.mark.parametrize("via", ["wire", "local"])
@pytest.mark.parametrize("dtype", ["f8", "f4", "i8", "u1", "bool", "c16"])
def test_arrays_round_trip_with_dtype_and_shape(dtype, via):
    a = (np.arange(24) % 3).astype(dtype).reshape(2, 3, 4)
    msg = roundtrip({"a": a, "empty": np.zeros((0, 5), dtype)}, via=via)
    assert msg.sender == 2 and msg.incarnation == 1 and msg.seq == 7
    np.testing.assert_array_equal(msg.payload["a"], a)
    assert msg.payload["a"].dtype == a.dtype and msg.payload["a"].shape == (2, 3, 4)
    assert msg.payload["empty"].shape == (0, 5)
    assert not msg.payload["a"].flags.writeable


def test_large_arrays_travel_as_separate_frames_and_scalars_inline():
    big = np.random.default_rng(0).normal(size=10_000)  # 80 kB > inline limit
    enc = encode_message({"w": big, "t": 3, "x": 1.5, "name": "abc", "flag": True},
                         run_id="r1", sender=0, incarnation=0, seq=0, limits=LIMITS)
    item = wire_item(enc, LIMITS)
    assert isinstance(item[1], Serialized)
    msg = roundtrip({"w": big, "t": 3, "x": 1.5, "name": "abc", "flag": True})
    np.testing.assert_array_equal(msg.payload["w"], big)
    assert msg.payload["t"] == 3 and msg.payload["x"] == 1.5
    assert msg.payload["name"] == "abc" and msg.payload["flag"] is True


def test_push_copies_arrays_so_the_sender_may_change_them():
    a = np.ones(4)
    enc = encode_message({"a": a}, run_id="r1", sender=0, incarnation=0, seq=0, limits=LIMITS)
    a[:] = 5
    msg = decode_message(local_item(enc), run_id="r1", n_partitions=2, limits=LIMITS)
    np.testing.assert_array_equal(msg.payload["a"], np.ones(4))


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({"a": np.array([object(), 1], dtype=object)}, "dtype object"),
        ({"nested": {"b": 1}}, "no nesting"),
        ({"lst": [1, 2]}, "no nesting"),
        ({1: np.zeros(2)}, "keys must be str"),
        ({"big": np.zeros(200_000)}, "max-message-bytes"),
        ({f"k{i}": 1 for i in range(17)}, "max-keys"),
        ({"none": None}, "NoneType"),
        ([1, 2], "must be a dict"),
        ({"rec": np.zeros(2, dtype=[("x", "f8")])}, "only numeric"),
    ],
)
def test_bad_payloads_are_refused_with_a_clear_error(payload, fragment):
    with pytest.raises(MessageError, match=fragment.replace("(", r"\(")):
        encode_message(payload, run_id="r1", sender=0, incarnation=0, seq=0, limits=LIMITS)


def _good_item():
    enc = encode_message({"a": np.arange(3.0)}, run_id="r1", sender=1, incarnation=0, seq=0,
                         limits=LIMITS)
    return local_item(enc)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda it: [b"\xc1garbage"], "not valid msgpack"),
        (lambda it: "hello", "not a"),
        (lambda it: [it[0]], "number of array descriptions"),
        (lambda it: [it[0], it[1][:-3]], "bytes for shape"),
        (lambda it: [it[0], pickle.dumps(np.arange(3.0))], "bytes for shape"),
        (lambda it: [it[0], np.arange(3.0)], "not raw bytes"),
        (lambda it: [it[0], Serialized({"serializer": "pickle"}, [b"x" * 24])], "not raw bytes"),
    ],
)
def test_malformed_items_raise_message_error(mutate, fragment):
    with pytest.raises(MessageError, match=fragment):
        decode_message(mutate(_good_item()), run_id="r1", n_partitions=2, limits=LIMITS)


def test_wrong_run_unknown_sender_and_object_dtype_headers_are_rejected():
    enc = encode_message({"a": np.arange(3.0)}, run_id="other", sender=1, incarnation=0, seq=0,
                         limits=LIMITS)
    with pytest.raises(MessageError, match="another run"):
        decode_message(local_item(enc), run_id="r1", n_partitions=2, limits=LIMITS)
    with pytest.raises(MessageError, match="unknown sender"):
        decode_message(local_item(enc), run_id="other", n_partitions=1, limits=LIMITS)
    header = msgpack.packb([2, "r1", 0, 0, 0, 0.0, {}, [["a", "|O", [1]]], None])
    with pytest.raises(MessageError, match="can't travel"):
        decode_message([header, b"\x00" * 8], run_id="r1", n_partitions=2, limits=LIMITS)


def test_a_pickle_payload_is_never_executed(tmp_path):
    """A crafted pickle that would create a file, sent where msgpack is expected."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = pickle.dumps(Exploit())
    for item in ([evil], [_good_item()[0], evil], [msgpack.packb([2, "r1", 0, 0, 0.0, 0, {}, [], None]), evil]):
        with pytest.raises(MessageError):
            decode_message(item, run_id="r1", n_partitions=2, limits=LIMITS)
    with pytest.raises(MessageError):
        unpack_payload(evil)
    assert not os.path.exists(marker)


def test_result_payloads_round_trip():
    out = unpack_payload(pack_payload({"w": np.arange(5.0), "n": 3}, LIMITS))
    np.testing.assert_array_equal(out["w"], np.arange(5.0))
    assert out["n"] == 3 and out["w"].flags.writeable


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), st.integers(), st.text(max_size=20),
                          st.lists(st.binary(max_size=50), max_size=3)), max_size=5))
def test_fuzzed_items_only_ever_raise_message_error(parts):
    try:
        decode_message(parts, run_id="r1", n_partitions=4, limits=LIMITS)
    except MessageError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_fuzzed_headers_only_ever_raise_message_error(header):
    try:
        decode_message([header], run_id="r1", n_partitions=4, limits=LIMITS)
    except MessageError:
        pass


def _header(arrays, slot=None):
    return msgpack.packb([2, "r1", 0, 0, 0, 0.0, {}, arrays, slot])


@pytest.mark.parametrize("shape, buf", [
    ([1] * 65, b"\x00" * 8),  # more dimensions than numpy allows
    ([1] * 33, b"\x00" * 8),  # more than the wire allows
    ([1 << 63, 0], b""),  # zero bytes, but no such array
    ([1 << 62, 1 << 40, 0], b""),  # sizes whose product overflows
])
def test_impossible_shapes_are_message_errors(shape, buf):
    with pytest.raises(MessageError):
        decode_message([_header([["a", "<f8", shape]]), buf], run_id="r1", n_partitions=2,
                       limits=Limits(1 << 20, 16, 1024))


@pytest.mark.parametrize("value", [2**70, -(2**63) - 1, 2**64])
def test_ints_beyond_64_bits_are_refused_as_message_errors(value):
    with pytest.raises(MessageError, match="64 bits"):
        encode_message({"a": value}, run_id="r1", sender=0, incarnation=0, seq=0, limits=LIMITS)
    with pytest.raises(MessageError, match="64 bits"):
        pack_payload({"a": value}, LIMITS)


def test_ints_at_the_64_bit_edges_travel():
    msg = roundtrip({"lo": -(2**63), "hi": 2**64 - 1})
    assert msg.payload == {"lo": -(2**63), "hi": 2**64 - 1}


def test_a_conflation_slot_travels_with_the_message():
    enc = encode_message({"a": 1}, run_id="r1", sender=1, incarnation=0, seq=0, limits=LIMITS,
                         slot="w")
    msg = decode_message(wire_item(enc, LIMITS), run_id="r1", n_partitions=2, limits=LIMITS)
    assert msg.slot == "w" and enc.slot == "w"
    assert roundtrip({"a": 1}).slot is None
    with pytest.raises(MessageError, match="slot"):
        decode_message([_header([], slot=3)], run_id="r1", n_partitions=2, limits=LIMITS)


def test_sparse_updates_travel_as_index_and_value_arrays_and_fit_variable_length_schemas():
    from asip._channel import MessageSchema

    idx = np.array([3, 17, 123_456], dtype=np.int64)
    val = np.array([0.5, -1.0, 2.0])
    msg = roundtrip({"idx": idx, "val": val, "t": 4})
    np.testing.assert_array_equal(msg.payload["idx"], idx)
    schema = MessageSchema({"idx": ("int64", (None,)), "val": ("float64", (None,)), "t": int})
    assert schema.violation(msg.payload) is None
    assert schema.violation({"idx": idx.astype(np.int32), "val": val, "t": 4}) is not None
    assert MessageSchema({"i": ("int32", (None,))}).violation({"i": np.arange(5, dtype=np.int32)}) is None
    assert schema.violation(dict(msg.payload, idx=idx.reshape(3, 1))) is not None


@pytest.mark.parametrize("code, expected", [(-1, None), (2, [2]), ([0, 3], [0, 3])])
def test_receiver_lists_decode(code, expected):
    assert decode_targets(code, 4) == expected


@pytest.mark.parametrize("code", [4, -2, [], [0, 9], [True], "x", None, [0] * 5, 1.0])
def test_malformed_receiver_lists_are_message_errors(code):
    with pytest.raises(MessageError):
        decode_targets(code, 4)
