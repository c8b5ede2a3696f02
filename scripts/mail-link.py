#!/usr/bin/env python3
"""Print the link in the newest mail of Keyward's mail drop (embedded mode).

Usage: scripts/mail-link.py [DATA_DIR]   (default ./data)
Mails are standard MIME (.eml, quoted-printable); this decodes the text part.
"""
import email
import glob
import os
import re
import sys

data_dir = sys.argv[1] if len(sys.argv) > 1 else "data"
files = glob.glob(os.path.join(data_dir, "mail", "*.eml"))
if not files:
    sys.exit(f"no mail in {data_dir}/mail yet")
with open(max(files, key=os.path.getmtime), "rb") as f:
    msg = email.message_from_binary_file(f)
for part in msg.walk():
    if part.get_content_type() == "text/plain":
        text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        m = re.search(r"https?://\S+", text)
        if m:
            print(m.group(0))
            sys.exit(0)
sys.exit("the newest mail has no link")
