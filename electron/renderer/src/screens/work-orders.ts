/** Work orders: the list, closing one, and a form for a new one. */
import { field, form, h, replace } from "../dom.js";
import { act, call, errorBox, section, table, type Screen } from "../kiosk.js";

export function workOrdersScreen(): Screen {
  function show(root: HTMLElement): void {
    const msg = h("div", { class: "messages" });
    void Promise.all([call("workOrders.list", {}), call("station.status", {})]).then(([r, st]) => {
      if (!r.ok) return replace(root, errorBox(r.error.message, r.error.code));
      if (!st.ok) return replace(root, errorBox(st.error.message, st.error.code));
      // The station's own profiles, by name and CA; the default first and chosen.
      const profiles = [...st.result.profiles].sort(
        (a, b) =>
          Number(b.name === st.result.defaultProfile) - Number(a.name === st.result.defaultProfile),
      );
      const create = form(
        { class: "grid-form" },
        [
          ...field("Id (optional)", h("input", { id: "wo-id", name: "id" })),
          ...field(
            "Profile",
            h(
              "select",
              { id: "wo-profile", name: "profile", required: true },
              ...profiles.map((p) =>
                h(
                  "option",
                  { value: p.name, selected: p.name === st.result.defaultProfile },
                  `${p.name} (CA ${p.ca})`,
                ),
              ),
            ),
          ),
          ...field(
            "Quantity",
            h("input", {
              id: "wo-quantity",
              name: "quantity",
              type: "number",
              min: 1,
              required: true,
            }),
          ),
          ...field(
            "Device id pattern (optional)",
            h("input", { id: "wo-pattern", name: "pattern" }),
          ),
          h("button", { type: "submit", class: "primary" }, "Create work order"),
        ],
        (v) =>
          void act(
            msg,
            "workOrders.create",
            {
              profile: v.profile ?? "",
              quantity: Number(v.quantity),
              ...(v.id ? { id: v.id } : {}),
              ...(v.pattern ? { pattern: v.pattern } : {}),
            },
            () => show(root),
          ),
      );
      replace(
        root,
        section(
          "Work orders",
          table(
            ["Id", "Profile", "Issued", "Quantity", "Status", "Created by", ""],
            r.result.map((w) => [
              w.id,
              w.profile,
              w.issued,
              w.quantity,
              w.status,
              w.createdBy,
              w.status === "open"
                ? h(
                    "button",
                    {
                      class: "secondary",
                      onclick: () =>
                        void act(msg, "workOrders.close", { id: w.id }, () => show(root)),
                    },
                    `Close ${w.id}`,
                  )
                : "",
            ]),
            "Work orders",
          ),
        ),
        section("New work order", create, msg),
      );
    });
  }
  return { show };
}
