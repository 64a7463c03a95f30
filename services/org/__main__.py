"""python -m services.org: the organisation-structure service (gRPC + outbox relay + import jobs)."""

from services.common.protect import protector
from services.common.runner import run_service
from services.common.settings import get_settings
from services.org import documents as d
from services.org.jobs import build_worker
from services.org.servicer import register

OUTBOX_DOCUMENTS = [
    d.CommunityDoc,
    d.GridDoc,
    d.CompoundDoc,
    d.GridStationDoc,
    d.PartyOrganizationDoc,
    d.MemberUnitDoc,
    d.PersonDoc,
    d.VolunteerTeamDoc,
    d.TalentEntryDoc,
    d.TeamServiceEntryDoc,
    d.UnitResourceEntryDoc,
    d.ResponsibilityItemDoc,
    d.PublicAffairsItemDoc,
]

if __name__ == "__main__":
    keys = protector(get_settings().data_key, get_settings().data_key_accepted)
    run_service(
        "org",
        lambda server: register(server, keys),
        outbox_documents=OUTBOX_DOCUMENTS,
        workers=[build_worker(keys)],  # spreadsheet imports run as background jobs (services/org/jobs.py)
        tenantless=["ListTenants"],
    )
