"""fasthmr_ros: the ROS 2 adapter around fasthmr_model (messages <-> arrays, parameters, publishing)."""
