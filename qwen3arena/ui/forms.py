"""Forms bound to dataclass fields by name, as LLaMA-Factory's manager binds components by id.

A form is a mapping `field name -> component`. Gradio hands a handler whose inputs are a set of
components one dict `{component: value}`; `Form.values` turns that into `{field: value}` for
the application layer (which builds and checks the dataclass), and `Form.fill` turns a mapping of
fields back into component updates. Adding a field to a form is one entry; nothing depends on
the order of a list.
"""

from __future__ import annotations

from typing import Any, Mapping

import gradio as gr


class Form:
    def __init__(self, **fields: gr.components.Component):
        self.fields = fields

    @property
    def components(self) -> set[gr.components.Component]:
        """The inputs (or outputs) of an event that reads (or fills) the whole form."""
        return set(self.fields.values())

    def values(self, data: Mapping[gr.components.Component, Any]) -> dict[str, Any]:
        """{field: value} from the dict Gradio passes to a handler with set inputs."""
        return {name: data[component] for name, component in self.fields.items() if component in data}

    def fill(self, values: Mapping[str, Any]) -> dict[gr.components.Component, Any]:
        """Component values for the fields present in `values` (others are left as they are)."""
        return {component: values[name] for name, component in self.fields.items() if name in values}

    def keep(self) -> dict[gr.components.Component, Any]:
        """No change to any field (an event that fills the form, refused)."""
        return {component: gr.update() for component in self.fields.values()}

    def __getitem__(self, name: str) -> gr.components.Component:
        return self.fields[name]
