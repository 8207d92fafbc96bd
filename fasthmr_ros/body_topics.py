"""The REP-155 per-body publishers of the node: /humans/bodies/<id>/roi and /humans/bodies/<id>/skeleton2d,
created when a track is first seen and destroyed when it ends, so that the topics a REP-155 consumer finds
are the bodies tracked now.

The node's inference thread calls publish() and close(); the publishers have no event handlers (no waitables
for the executor's thread to wait on), so creating and destroying them there does not race the executor.
"""

from __future__ import annotations

from hri_msgs.msg import NormalizedRegionOfInterest2D, Skeleton2D
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile

from fasthmr_ros.standard_outputs import Rep155Outputs, body_topics


class BodyTopicPublishers:
    """track id -> its (roi, skeleton2d) publishers, for the tracks seen and not yet ended."""

    def __init__(self, node: Node, qos: QoSProfile) -> None:
        self._node = node
        self._qos = qos
        self._publishers: dict[int, tuple] = {}

    @property
    def track_ids(self) -> list[int]:
        """The tracks that have publishers now."""
        return sorted(self._publishers)

    def _create(self, track_id: int) -> tuple:
        no_events = PublisherEventCallbacks(use_default_callbacks=False)
        roi_topic, skeleton_topic = body_topics(track_id)
        return (self._node.create_publisher(NormalizedRegionOfInterest2D, roi_topic, self._qos,
                                            event_callbacks=no_events),
                self._node.create_publisher(Skeleton2D, skeleton_topic, self._qos, event_callbacks=no_events))

    def publish(self, outputs: Rep155Outputs, ended_tracks: list[int]) -> None:
        """Destroys the publishers of the tracks that ended, then publishes each body's roi and skeleton (creating
        the publishers of tracks seen for the first time)."""
        self.end(ended_tracks)
        for track_id, (roi, skeleton) in outputs.bodies.items():
            if track_id not in self._publishers:
                self._publishers[track_id] = self._create(track_id)
            roi_publisher, skeleton_publisher = self._publishers[track_id]
            roi_publisher.publish(roi)
            skeleton_publisher.publish(skeleton)

    def end(self, track_ids) -> None:
        for track_id in track_ids:
            for publisher in self._publishers.pop(int(track_id), ()):
                self._node.destroy_publisher(publisher)

    def close(self) -> None:
        """Destroys every body's publishers (deactivation, shutdown)."""
        self.end(list(self._publishers))
