"""The firmware's formats, shared by management (which accepts uploads and queues them) and the root
update service (hw/appliance/update.py): signed update bundles, version order, what the booted OS is,
and the update spool between the two.
"""
