"""The MessagePack wire protocol on real servers, beside JSON and Socket.IO clients."""
