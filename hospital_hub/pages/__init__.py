"""The hub's web pages and their forms (HTML, not in the OpenAPI document):
signing in and out (:mod:`.site`), the dispatch board and history
(:mod:`.dispatch`), an ER's console and case view (:mod:`.er`); templates
and rendering in :mod:`.render`."""

from __future__ import annotations

from fastapi import APIRouter

from hospital_hub.pages import dispatch, er, site

pages = APIRouter(include_in_schema=False)
for _section in (site, dispatch, er):
    pages.include_router(_section.router)

__all__ = ["pages"]
