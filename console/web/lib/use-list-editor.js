// Hook: the state of a page that lists things and edits, creates and deletes them one at a time
// (users, roles): which one is being edited or deleted, and what the last action said.

import { useState } from "../vendor/vendor.js";
import { del } from "./api.js";

/** `list` is a useResource of the listing; `pathOf(item)` its API path, `nameOf(item)` its name. */
export function useListEditor(list, { pathOf, nameOf }) {
  const [editing, setEditing] = useState(null); // null, "new" or the item
  const [deleting, setDeleting] = useState(null);
  const [notice, setNotice] = useState(null);
  const [error, setError] = useState(null);
  const saved = (message) => {
    setEditing(null);
    setNotice(message);
    list.reload();
  };
  const remove = async () => {
    const item = deleting;
    setDeleting(null);
    try {
      await del(pathOf(item));
      setNotice(`Deleted ${nameOf(item)}.`);
    } catch (err) {
      setError(err);
    }
    list.reload();
  };
  return { editing, setEditing, deleting, setDeleting, notice, error, setError, saved, remove };
}
