/** Work orders: created and closed by officers; the line runs against one. */
import { LinesignError } from "../domain/errors.js";
import { checkWorkOrderPattern, WORK_ORDER_ID, type WorkOrder } from "../domain/work-order.js";
import { act, recordChange, type AppContext } from "./context.js";

export interface WorkOrderInput {
  id?: string;
  profile: string;
  quantity: number;
  pattern?: string;
  devices?: string[];
  notBefore?: string;
  notAfter?: string;
}

export interface WorkOrderView extends WorkOrder {
  issued: number;
  remaining: number;
}

/** The development station's open-ended work order (README names it). */
export const DEV_WORK_ORDER = "dev";

export class WorkOrderService {
  constructor(
    private readonly ctx: AppContext,
    private readonly profiles: () => string[],
  ) {}

  create(input: WorkOrderInput): Promise<WorkOrderView> {
    return act(this.ctx, "work-order.create", input.id ?? null, async () => {
      const id = input.id ?? this.nextId();
      if (!WORK_ORDER_ID.test(id))
        throw new LinesignError(
          "USAGE",
          `Work order id "${id}" may use letters, digits, '.', '_' and '-' (at most 64).`,
        );
      if (!this.profiles().includes(input.profile))
        throw new LinesignError(
          "PROFILE_UNKNOWN",
          `No profile is named "${input.profile}". Profiles: ${this.profiles().join(", ")}.`,
        );
      if (!Number.isInteger(input.quantity) || input.quantity < 1 || input.quantity > 10_000_000)
        throw new LinesignError("USAGE", "--quantity must be a whole number from 1 to 10000000.");
      if (input.pattern) checkWorkOrderPattern(input.pattern);
      if (input.notBefore && input.notAfter && input.notBefore >= input.notAfter)
        throw new LinesignError("USAGE", "The work order's window ends before it starts.");
      const wo: WorkOrder = {
        id,
        profile: input.profile,
        quantity: input.quantity,
        pattern: input.pattern ?? null,
        devices: input.devices ?? null,
        notBefore: input.notBefore ?? null,
        notAfter: input.notAfter ?? null,
        status: "open",
        createdBy: this.ctx.actor,
        createdAt: this.ctx.clock.now().toISOString(),
      };
      recordChange(
        this.ctx,
        {
          action: "work-order.create",
          subject: id,
          details: { ...wo, devices: wo.devices?.length ?? null },
        },
        () => this.ctx.store.insertWorkOrder(wo),
      );
      return this.view(wo);
    });
  }

  close(id: string): Promise<WorkOrderView> {
    return act(this.ctx, "work-order.close", id, async () => {
      const wo = this.get(id);
      if (wo.status === "closed")
        throw new LinesignError("USAGE", `Work order ${id} is closed already.`);
      recordChange(
        this.ctx,
        {
          action: "work-order.close",
          subject: id,
          details: { issued: this.ctx.store.countIssuedFor(id) },
        },
        () => this.ctx.store.setWorkOrderStatus(id, "closed"),
      );
      return this.view(this.get(id));
    });
  }

  list(): WorkOrderView[] {
    return this.ctx.store.listWorkOrders().map((w) => this.view(w));
  }

  /** One work order with its counts. @throws LinesignError WORK_ORDER_UNKNOWN */
  show(id: string): WorkOrderView {
    return this.view(this.get(id));
  }

  get(id: string): WorkOrder {
    const wo = this.ctx.store.getWorkOrder(id);
    if (!wo) throw new LinesignError("WORK_ORDER_UNKNOWN", `No work order has id ${id}.`);
    return wo;
  }

  /** The work order a line runs against: the one named, else the only open one. */
  forLine(id?: string): WorkOrder {
    if (id) {
      const wo = this.get(id);
      if (wo.status !== "open")
        throw new LinesignError("WORK_ORDER_CLOSED", `Work order ${id} is closed.`);
      return wo;
    }
    const open = this.ctx.store.listWorkOrders().filter((w) => w.status === "open");
    if (open.length === 1) return open[0]!;
    throw new LinesignError(
      "WORK_ORDER_REQUIRED",
      open.length === 0
        ? 'The line runs only against an open work order: an officer opens one with "linesign work-order create".'
        : `Several work orders are open (${open.map((w) => w.id).join(", ")}): choose one with --work-order ID.`,
    );
  }

  private view(wo: WorkOrder): WorkOrderView {
    const issued = this.ctx.store.countIssuedFor(wo.id);
    return { ...wo, issued, remaining: Math.max(0, wo.quantity - issued) };
  }

  private nextId(): string {
    const n = this.ctx.store.listWorkOrders().length + 1;
    return `wo-${String(n).padStart(4, "0")}`;
  }
}
