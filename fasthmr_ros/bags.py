"""rosbag2 bags (MCAP and sqlite3) through the `rosbags` library, with the node's own message classes.

Reading: `BagReader` opens a bag folder (metadata.yaml + .mcap or .db3 files) or a bare .mcap file, checks
that the topics replay needs exist with the types it reads (images and masks raw or CompressedImage; an image
or mask topic that is not in the bag is looked for under image_transport's `<topic>/compressed`), and yields
the messages of those topics in bag order, deserialised by rclpy into the classes the node receives. A bag
that ends early stops the iteration and leaves the reason in `error`, so callers report what they read. An
MCAP file cut short (a recorder killed before it wrote the summary at the end) cannot be opened by rosbags,
which needs that summary; it is then read record by record with the `mcap` library's stream reader, up to
where it breaks.

Writing: `BagWriter` writes a new MCAP (or sqlite3) bag in a staging folder beside the target and renames it
into place when closed without error, so an interrupted write never leaves a half-written bag under the
target name. Messages are serialised by rclpy (or given as CDR bytes); the message definitions in the bag
come from rosbags' Kilted type store plus fasthmr_msgs, read from its .msg files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, NamedTuple

from fasthmr_msgs.msg import SmplBodyArray
from rclpy.serialization import deserialize_message, serialize_message
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from fasthmr_model.errors import InputError
from fasthmr_model.staging import move_into_place, staging_folder
from fasthmr_ros.inputs import COMPRESSED_SUFFIX

GROUND_TRUTH_TOPIC = "/fasthmr/ground_truth"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
BODIES_TYPE = "fasthmr_msgs/msg/SmplBodyArray"
# What replay reads on each of its input roles.
INPUT_TYPES = {"image": (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE), "camera_info": (CAMERA_INFO_TYPE,),
               "mask": (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE), "ground_truth": (BODIES_TYPE,)}
PEOPLE_TYPE = "geometry_msgs/msg/PoseArray"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"
MESSAGE_CLASSES = {IMAGE_TYPE: Image, COMPRESSED_IMAGE_TYPE: CompressedImage, CAMERA_INFO_TYPE: CameraInfo,
                   BODIES_TYPE: SmplBodyArray, PEOPLE_TYPE: PoseArray, MARKERS_TYPE: MarkerArray}
STORAGES = ("mcap", "sqlite3")


class BagTopics(NamedTuple):
    """Topic of each input role (the node's defaults come from config/fasthmr.yaml)."""

    image: str
    camera_info: str
    mask: str
    ground_truth: str = GROUND_TRUTH_TOPIC


class BagMessage(NamedTuple):
    """role: a BagTopics field name; time_ns: the bag's receive time; message: the rclpy message."""

    role: str
    time_ns: int
    message: object


def _msg_folders() -> list[Path]:
    """Where fasthmr_msgs' .msg files are: its installed share folder, else the repository's msg/."""
    folders = []
    try:
        from ament_index_python.packages import get_package_share_directory

        folders.append(Path(get_package_share_directory("fasthmr_msgs")) / "msg")
    except Exception:  # noqa: BLE001 - not installed through ament: fall back to the source tree
        pass
    folders.append(Path(__file__).resolve().parent.parent / "msg")
    return folders


def typestore():
    """rosbags' type store for ROS 2 Kilted with fasthmr_msgs added (for the definitions written into bags)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    folder = next((folder for folder in _msg_folders() if (folder / "SmplBodyArray.msg").is_file()), None)
    if folder is None:
        raise InputError("fasthmr_msgs' .msg files were not found; run `make setup` (or build fasthmr_msgs)")
    types = {}
    for name in ("SmplBody", "SmplBodyArray"):
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"fasthmr_msgs/msg/{name}"))
    store.register(types)
    return store


class BagReader:
    """The input messages of a bag, in bag order.

    Args:
        path: a rosbag2 folder or a bare .mcap file.
        topics: the topic of each role. The image and camera_info topics must exist; without the mask topic
            frames are read without masks (`has_masks` False), without the ground-truth topic there are no
            metrics (`has_ground_truth` False).

    Raises InputError (naming the bag, the topic and what to do) when the bag cannot be opened, a needed
    topic is missing, or a topic holds another message type than replay reads.
    """

    def __init__(self, path: str | Path, topics: BagTopics) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        self.topics = topics
        self.error: str | None = None  # why reading stopped early, if it did
        self.undecodable = 0  # messages that failed to deserialise (skipped)
        if not self.path.exists():
            raise InputError(f"the bag {self.path} does not exist")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as error:  # rosbags raises its own errors, OSError, KeyError, ... for broken bags
            files = [self.path] if self.path.suffix == ".mcap" else sorted(self.path.glob("*.mcap"))
            if not files:
                raise InputError(f"cannot open the bag {self.path} ({type(error).__name__}: {error}); give a "
                                 "rosbag2 folder (metadata.yaml with .mcap or .db3 files) or an .mcap file") from None
            self._reader = _McapStream(files)
            if not self._reader.connections:
                raise InputError(f"cannot read the bag {self.path} ({type(error).__name__}: {error}); it holds no "
                                 "readable MCAP record: it is empty, cut short before its first message, or not "
                                 "a rosbag2 bag") from None
            self.error = (f"the bag could not be opened normally ({type(error).__name__}: {error}); it was read "
                          "record by record")
        available = {}
        for connection in self._reader.connections:
            available.setdefault(connection.topic, set()).add(connection.msgtype)
        self.message_count = self._reader.message_count
        self._roles: dict[str, str] = {}
        self.transports: dict[str, str] = {}  # image and mask (when read): "raw" or "compressed"
        for role, topic in topics._asdict().items():
            if topic not in available and role in ("image", "mask") and topic + COMPRESSED_SUFFIX in available:
                topic += COMPRESSED_SUFFIX
                self.topics = self.topics._replace(**{role: topic})
            if topic not in available:
                if role in ("image", "camera_info"):
                    self.close()
                    listing = ", ".join(f"{name} ({'/'.join(sorted(kinds))})" for name, kinds in sorted(available.items()))
                    raise InputError(f"the bag {self.path} has no {role} topic {topic}; its topics are: "
                                     f"{listing or 'none'}. Name the right one with --{role.replace('_', '-')}-topic")
                continue
            types = available[topic]
            if len(types) != 1 or not types <= set(INPUT_TYPES[role]):
                self.close()
                raise InputError(f"the {role} topic {topic} of {self.path} holds {', '.join(sorted(types))}; replay "
                                 f"reads {' or '.join(INPUT_TYPES[role])} there")
            self._roles[topic] = role
            if role in ("image", "mask"):
                self.transports[role] = "compressed" if types == {COMPRESSED_IMAGE_TYPE} else "raw"
        self.has_masks = self.topics.mask in self._roles
        self.has_ground_truth = self.topics.ground_truth in self._roles

    def messages(self) -> Iterator[BagMessage]:
        connections = [c for c in self._reader.connections if c.topic in self._roles]
        iterator = self._reader.messages(connections=connections)
        while True:
            try:
                connection, time_ns, raw = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # a truncated or corrupt file: report what was read
                cause = "the file ends early (truncated)" if type(error).__name__ == "EndOfFile" else \
                    f"{type(error).__name__}: {error}"
                self.error = "; ".join(filter(None, (self.error, f"reading stopped: {cause}")))
                return
            try:
                message = deserialize_message(bytes(raw), MESSAGE_CLASSES[connection.msgtype])
            except Exception:  # noqa: BLE001 - one bad message is skipped and counted
                self.undecodable += 1
                continue
            yield BagMessage(self._roles[connection.topic], time_ns, message)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Connection(NamedTuple):
    topic: str
    msgtype: str


class _McapStream:
    """The part of rosbags' Reader that BagReader uses, over MCAP files read record by record (no summary
    needed). Messages come in file order; reading stops with an error where a file breaks."""

    def __init__(self, files: list[Path]) -> None:
        self._files = files
        self.message_count = 0
        try:
            for record in self._records():
                if type(record).__name__ == "Message":
                    self.message_count += 1
        except Exception:  # noqa: BLE001 - the break is met again, and reported, by messages()
            pass
        self.connections = list(dict.fromkeys(self._channels.values()))

    def _records(self):
        from mcap.stream_reader import StreamReader

        self._channels: dict[tuple, _Connection] = {}
        schemas: dict[tuple, str] = {}
        for index, path in enumerate(self._files):
            with open(path, "rb") as stream:
                for record in StreamReader(stream).records:
                    kind = type(record).__name__
                    if kind == "Schema":
                        schemas[index, record.id] = record.name
                    elif kind == "Channel":
                        self._channels[index, record.id] = _Connection(record.topic, schemas.get((index, record.schema_id), ""))
                    elif kind == "Message":
                        record.connection = self._channels.get((index, record.channel_id))
                    yield record

    def messages(self, connections=()):
        wanted = set(connections)
        for record in self._records():
            if type(record).__name__ == "Message" and record.connection in wanted:
                yield record.connection, record.log_time, record.data

    def close(self) -> None:
        pass


class BagWriter:
    """A new bag at `path` (must not exist), written atomically: write(), then close() (or use `with`). It is
    written in a staging folder beside `path` (fasthmr_model.staging) and moved into place when closed.

    storage: "mcap" (default) or "sqlite3".
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise InputError(f"bag storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise InputError(f"{self.path} already exists; give a new path for the output bag (nothing is overwritten)")
        self._staging = staging_folder(self.path)  # a killed replay's is removed by the next one
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._staging / self.path.name, version=9, storage_plugin=plugin)
        self._writer.open()
        self._store = typestore()
        self._connections: dict[str, object] = {}

    def write(self, topic: str, msgtype: str, time_ns: int, message) -> None:
        """One message (an rclpy message, or its CDR bytes) on `topic` at bag time `time_ns`."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self._connections[topic] = connection
        data = message if isinstance(message, (bytes, bytearray, memoryview)) else serialize_message(message)
        self._writer.write(connection, int(time_ns), bytes(data))

    def close(self, keep: bool = True) -> None:
        """Finishes the bag and moves it into place (keep=False discards it)."""
        self._writer.close()
        if keep:
            move_into_place(self._staging / self.path.name, self.path)
        shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep=exc_type is None)


def read_topic(path: str | Path, topic: str) -> Iterator[tuple[int, object]]:
    """(time_ns, rclpy message) of one topic of a bag (e.g. the outputs a replay wrote), in bag order."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise InputError(f"the bag {path} has no topic {topic}")
        message_class = MESSAGE_CLASSES.get(connections[0].msgtype)
        if message_class is None:
            raise InputError(f"{topic} of {path} holds {connections[0].msgtype}, which this reader does not know")
        for _, time_ns, raw in reader.messages(connections=connections):
            yield time_ns, deserialize_message(bytes(raw), message_class)
