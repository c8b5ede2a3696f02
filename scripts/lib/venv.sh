# A Python venv kept outside the clone and reused while its requirements are unchanged. Source
# it; the caller defines apt_install (Debian ships venv's ensurepip separately).
#
#   python_venv VENV REQUIREMENTS_FILE
python_venv() {
  local venv=$1 reqs=$2 err
  if [ -x "$venv/bin/python" ] && cmp -s "$reqs" "$venv/requirements.txt"; then
    echo "reusing $venv"
    return
  fi
  rm -rf "$venv"
  err=$(mktemp)
  if ! python3 -m venv "$venv" 2>"$err"; then
    echo "python3 -m venv failed ($(tail -n 1 "$err")); installing python3-venv"
    apt_install python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  rm -f "$err"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
  # Written last: marks the venv complete and says for which requirements.
  cp "$reqs" "$venv/requirements.txt"
}
