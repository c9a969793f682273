"""kombu's filesystem transport (the demo's broker, when there is no Redis) with atomic writes.

kombu creates a message's file and then writes it. A worker polling in between moves the empty
file away, fails to parse it and stops with "Unrecoverable error: JSONDecodeError": the demo's
rollouts then never move. Here a message is written under a name the reader skips (it takes only
``<time>_<uuid>.<queue>.msg``), then renamed into place, which is atomic on one filesystem.
"""
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"  # kombu's own naming
        final = os.path.join(self.data_folder_out, name)
        writing = os.path.join(self.data_folder_out, f"writing-{uuid.uuid4()}")
        try:
            with open(writing, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(writing, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
