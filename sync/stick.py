"""A USB stick's layout, shared by the box and the hub ("sneakernet" sync).

<stick>/schoolbox/<box id>/<seq>.sbxb       a box's sealed bundles
<stick>/schoolbox/<box id>/acks/<seq>.json  the hub's signed acknowledgements
<stick>/schoolbox/updates/<update>/         the district's signed updates
"""

USB_FOLDER = "schoolbox"
UPDATES = "updates"
BUNDLE_SUFFIX = ".sbxb"
