"""What the ``storyboard`` command needs from the server side, offered through entry points (group
``storyboard.server``) so that the client SDK finds it without importing it: the local stack and planning in this
process."""
