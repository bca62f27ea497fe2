#!/usr/bin/env python3
"""Writes the example melodies in assets/ as plain type-0 MIDI files.

Old Hundredth (Genevan Psalter, 1551; public domain), in G major, 4/4 at
84 bpm: each phrase is a half note, six quarters and a whole note.
Run from the repository root: python3 assets/make_melodies.py
"""
import struct

PPQ = 480
G4, A4, B4, C5, D5, E4, FS4, D4 = 67, 69, 71, 72, 74, 64, 66, 62
PHRASES = [
    [G4, G4, FS4, E4, D4, G4, A4, B4],
    [B4, B4, B4, A4, G4, C5, B4, A4],
    [G4, A4, B4, A4, G4, E4, FS4, G4],
    [D5, B4, G4, A4, C5, B4, A4, G4],
]


def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def melody(phrases):
    notes = []  # (pitch, beats)
    for phrase in phrases:
        notes.append((phrase[0], 2))
        notes.extend((p, 1) for p in phrase[1:-1])
        notes.append((phrase[-1], 4))
    return notes


def smf(notes, bpm):
    events = bytearray()
    events += vlq(0) + b"\xff\x03" + vlq(len(b"Melody")) + b"Melody"
    events += vlq(0) + b"\xff\x51\x03" + struct.pack(">I", round(60e6 / bpm))[1:]
    events += vlq(0) + b"\xff\x58\x04" + bytes([4, 2, 24, 8])
    for pitch, beats in notes:
        events += vlq(0) + bytes([0x90, pitch, 84])
        events += vlq(beats * PPQ) + bytes([0x80, pitch, 0])
    events += vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, PPQ)
    return header + b"MTrk" + struct.pack(">I", len(events)) + bytes(events)


if __name__ == "__main__":
    with open("assets/old-hundredth.mid", "wb") as f:
        f.write(smf(melody(PHRASES), 84))
    with open("assets/old-hundredth-phrase1.mid", "wb") as f:
        f.write(smf(melody(PHRASES[:1]) + [(G4, 4)], 84))
